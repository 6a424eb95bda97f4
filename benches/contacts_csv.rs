//! The CPU cost of reading a contacts CSV, without the database: phone normalisation alone
//! (`normalise_phone`, the `phonenumber` crate; `PhoneNormaliser`, what an import uses), and whole
//! rows (`ContactsCsv`: decode, map, normalise, duplicate check).
//!
//! `cargo bench --bench contacts_csv` prints rows per second for 200,000 generated rows in the
//! seed's shape (`nombre;sustantivo;grupo;telefono;ciudad`, phones in mixed formats), and then
//! the write side alone: the same rows laid out in the import's batches (ids, attributes as JSON),
//! then upserted through the import's bulk connection into a fresh SQLite file with the server's
//! settings (WAL, `synchronous=NORMAL`, migrations applied, checkpoints beside the writer).
use std::{hint::black_box, time::Instant};

use pregonero::{
    config::Settings,
    contacts::{
        csv_reader::{ContactRow, ContactsCsv, normalise_phone, region},
        repo,
    },
    db::SqliteBulk,
    domain::phone::{Outcome, PhoneNormaliser, clean},
};

const ROWS: usize = 200_000;

fn phone(i: usize) -> String {
    let n = 600_000_000 + i;
    let s = n.to_string();
    match i % 3 {
        0 => format!("+34 {n}"),
        1 => format!("{} {} {}", &s[..3], &s[3..6], &s[6..]),
        _ => format!("0034{n}"),
    }
}

/// Prints the rate of normalising [`ROWS`] phones since `started`.
fn phones_per_second(label: &str, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{label:<21} {:>9.0} phones/s ({:.2} µs each)",
        ROWS as f64 / secs,
        secs * 1e6 / ROWS as f64
    );
}

fn main() {
    // SQLite allocates through mimalloc, as in the server.
    pregonero::allocator::configure();
    let es = region("ES").expect("ES");
    let phones: Vec<String> = (0..ROWS).map(phone).collect();
    let started = Instant::now();
    let ok = phones
        .iter()
        .filter(|p| black_box(normalise_phone(p, es)).is_ok())
        .count();
    assert_eq!(ok, ROWS);
    phones_per_second("normalise_phone:", started);

    let started = Instant::now();
    let mut normaliser = PhoneNormaliser::new(es);
    let ok = phones
        .iter()
        .filter(|p| matches!(black_box(normaliser.normalise(&clean(p))), Outcome::E164(_)))
        .count();
    assert_eq!(ok, ROWS);
    phones_per_second("PhoneNormaliser:", started);

    let mut file = b"nombre;sustantivo;grupo;telefono;ciudad\n".to_vec();
    for (i, p) in phones.iter().enumerate() {
        file.extend_from_slice(
            format!("Persona {i};Sr.;G{};{p};Ciudad {}\n", i % 4, i % 50).as_bytes(),
        );
    }
    let started = Instant::now();
    let rows: Vec<ContactRow> = ContactsCsv::new(&file[..], es)
        .expect("header")
        .filter_map(|(_, r)| black_box(r).ok())
        .collect();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(rows.len(), ROWS);
    println!(
        "ContactsCsv rows:     {:>9.0} rows/s ({:.2} µs each)",
        ROWS as f64 / secs,
        secs * 1e6 / ROWS as f64
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let settings = Settings {
        data_dir: dir.path().to_path_buf(),
        ..Settings::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let db = runtime.block_on(async { pregonero::db::connect(&settings).await.expect("database") });
    let path = SqliteBulk::path(&db).expect("SQLite");
    let upsert = repo::Upsert::new(&"owner".into(), "bench", chrono::Utc::now());
    let started = Instant::now();
    let batches = rows
        .chunks(repo::BATCH_ROWS)
        .map(|batch| repo::ContactColumns::new(batch.to_vec()))
        .collect::<Vec<_>>();
    let build = started.elapsed().as_secs_f64();
    let bulk = SqliteBulk::open(&path).expect("bulk connection");
    let mut sqlite = repo::SqliteUpsert::new(bulk.connection(), &upsert).expect("upsert");
    let started = Instant::now();
    for columns in batches {
        bulk.write(|_| sqlite.run(columns)).expect("upsert");
    }
    let write = started.elapsed().as_secs_f64();
    for (what, secs) in [
        ("SQLite upsert, build:", build),
        ("SQLite upsert, run:", write),
    ] {
        println!(
            "{what:<22}{:>9.0} rows/s ({:.2} µs each, batches of {})",
            ROWS as f64 / secs,
            secs * 1e6 / ROWS as f64,
            repo::BATCH_ROWS
        );
    }
}

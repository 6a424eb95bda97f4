//! The CPU cost of reading a contacts CSV, without the database: phone normalisation alone
//! (`normalise_phone`), and whole rows (`ContactsCsv`: decode, map, normalise, duplicate check).
//!
//! `cargo bench --bench contacts_csv` prints rows per second for 200,000 generated rows in the
//! seed's shape (`nombre;sustantivo;grupo;telefono;ciudad`, phones in mixed formats).
use std::{hint::black_box, time::Instant};

use pregonero::contacts::csv_reader::{ContactsCsv, normalise_phone, region};

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

fn main() {
    let es = region("ES").expect("ES");
    let phones: Vec<String> = (0..ROWS).map(phone).collect();
    let started = Instant::now();
    let ok = phones
        .iter()
        .filter(|p| black_box(normalise_phone(p, es)).is_ok())
        .count();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(ok, ROWS);
    println!(
        "normalise_phone:      {:>9.0} phones/s ({:.2} µs each)",
        ROWS as f64 / secs,
        secs * 1e6 / ROWS as f64
    );

    let mut file = b"nombre;sustantivo;grupo;telefono;ciudad\n".to_vec();
    for (i, p) in phones.iter().enumerate() {
        file.extend_from_slice(
            format!("Persona {i};Sr.;G{};{p};Ciudad {}\n", i % 4, i % 50).as_bytes(),
        );
    }
    let started = Instant::now();
    let rows = ContactsCsv::new(&file[..], es)
        .expect("header")
        .filter(|(_, r)| black_box(r).is_ok())
        .count();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(rows, ROWS);
    println!(
        "ContactsCsv rows:     {:>9.0} rows/s ({:.2} µs each)",
        ROWS as f64 / secs,
        secs * 1e6 / ROWS as f64
    );
}

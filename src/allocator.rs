//! The C allocators under the server's own (mimalloc, `src/main.rs`): SQLite allocates through
//! mimalloc too, without its usage counters, and glibc's malloc, left to other C code, keeps few
//! arenas.

/// Call first in `main`, before any other thread starts and before SQLite is used.
pub fn configure() {
    sqlite_on_mimalloc();
    limit_malloc_arenas();
}

/// SQLite's allocations went to glibc's malloc: a tenth of a contact import's writer thread was
/// glibc's locks and free lists, and another 2 % SQLite's own usage counters (`MEMSTATUS`, which
/// take a mutex per allocation and which nothing here reads). mimalloc keeps a heap per thread.
fn sqlite_on_mimalloc() {
    use std::ffi::{c_int, c_void};

    use libmimalloc_sys::{mi_free, mi_malloc, mi_realloc, mi_usable_size};
    use rusqlite::ffi;

    // SQLite never asks for 0 bytes nor for more than 2 GiB, and reallocates only what it
    // allocated (sqlite3_mem_methods' contract).
    unsafe extern "C" fn malloc(n: c_int) -> *mut c_void {
        unsafe { mi_malloc(n as usize) }
    }
    unsafe extern "C" fn free(p: *mut c_void) {
        unsafe { mi_free(p) }
    }
    unsafe extern "C" fn realloc(p: *mut c_void, n: c_int) -> *mut c_void {
        unsafe { mi_realloc(p, n as usize) }
    }
    unsafe extern "C" fn size(p: *mut c_void) -> c_int {
        unsafe { mi_usable_size(p) as c_int }
    }
    unsafe extern "C" fn roundup(n: c_int) -> c_int {
        (n + 7) & !7
    }
    unsafe extern "C" fn init(_: *mut c_void) -> c_int {
        ffi::SQLITE_OK
    }
    unsafe extern "C" fn shutdown(_: *mut c_void) {}

    let methods = ffi::sqlite3_mem_methods {
        xMalloc: Some(malloc),
        xFree: Some(free),
        xRealloc: Some(realloc),
        xSize: Some(size),
        xRoundup: Some(roundup),
        xInit: Some(init),
        xShutdown: Some(shutdown),
        pAppData: std::ptr::null_mut(),
    };
    // SAFETY: called before SQLite is initialised (the first connection does that) and before any
    // other thread exists; SQLite copies `methods` before returning. Should SQLite be initialised
    // already, both calls fail with SQLITE_MISUSE and change nothing.
    unsafe {
        ffi::sqlite3_config(
            ffi::SQLITE_CONFIG_MALLOC,
            &methods as *const ffi::sqlite3_mem_methods,
        );
        ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int);
    }
}

/// glibc gives a thread that finds the heap busy an arena of its own, up to eight per core, and
/// gives little of it back: when SQLite still allocated there, sqlx's thread per SQLite
/// connection took a long campaign to a dozen arenas of about 12 MB (157 MB peak RSS at 100,000
/// recipients; 129 MB with four). Four arenas stay as a bound for the C code that still uses it.
/// `MALLOC_ARENA_MAX` in the environment still wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    const ARENAS: libc::c_int = 4;
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only tunes the allocator and is called before any other thread starts.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

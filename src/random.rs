//! Random bytes from the kernel, for what must not be guessed (the hash key, probe names).

use std::io::Read;

/// Fills `bytes` from /dev/urandom.
pub fn fill(bytes: &mut [u8]) -> std::io::Result<()> {
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(bytes))
}

//! Quantities as people read them. One byte formatter for every message Coffer writes
//! for people: the CLI, the reports, alerts and errors.

/// A byte count in binary units with about three significant digits: `0 B`, `512 B`,
/// `1.50 KiB`, `12.3 MiB`, `150 MiB`, `2.25 GiB`.
#[must_use]
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    #[allow(clippy::cast_precision_loss)]
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn bytes_read_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.00 KiB");
        assert_eq!(human_bytes(1536), "1.50 KiB");
        assert_eq!(human_bytes(12_900_000), "12.3 MiB");
        assert_eq!(human_bytes(150 * 1024 * 1024), "150 MiB");
        assert_eq!(human_bytes(2_415_919_104), "2.25 GiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }
}

//! Text for the PDF: what the standard fonts can show, how wide it is, and numbers as
//! people read them.

/// Characters the standard fonts (WinAnsi, here limited to Latin-1) can show; anything
/// else becomes `?`, control characters a space.
pub(crate) fn latin1(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            ' '..='~' | '\u{A0}'..='\u{FF}' => c,
            c if c.is_control() => ' ',
            _ => '?',
        })
        .collect()
}

/// Helvetica's advance widths (AFM, thousandths of an em) for ' '..='~'.
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278,
    278, // ' '..'/'
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, // digits
    278, 278, 584, 584, 584, 556, 1015, // ':'..'@'
    667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, // A..M
    722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, // N..Z
    278, 278, 278, 469, 556, 333, // '['..'`'
    556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, // a..m
    556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, // n..z
    334, 260, 334, 584, // '{'..'~'
];

/// Helvetica-Bold's, likewise.
const HELVETICA_BOLD: [u16; 95] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278,
    278, // ' '..'/'
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, // digits
    333, 333, 584, 584, 584, 611, 975, // ':'..'@'
    722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, // A..M
    722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, // N..Z
    333, 278, 333, 584, 556, 333, // '['..'`'
    556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, // a..m
    611, 611, 611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, // n..z
    389, 280, 389, 584, // '{'..'~'
];

/// The width of `s` (already Latin-1) in points at `size`. Letters beyond ASCII are
/// taken as wide as a digit, close enough for fitting cells.
pub(crate) fn width(s: &str, size: f32, bold: bool) -> f32 {
    let table = if bold { &HELVETICA_BOLD } else { &HELVETICA };
    let units: u32 = s
        .chars()
        .map(|c| {
            let i = (c as u32).wrapping_sub(32) as usize;
            u32::from(table.get(i).copied().unwrap_or(556))
        })
        .sum();
    #[allow(clippy::cast_precision_loss)]
    let units = units as f32;
    units * size / 1000.0
}

/// `s` shortened with `...` so that it fits `max` points.
pub(crate) fn fit(s: &str, max: f32, size: f32, bold: bool) -> String {
    let s = latin1(s);
    if width(&s, size, bold) <= max {
        return s;
    }
    let mut out: String = s.clone();
    while !out.is_empty() && width(&out, size, bold) + width("...", size, bold) > max {
        out.pop();
    }
    out.push_str("...");
    out
}

/// `s` broken into lines no wider than `max` points: at spaces, and inside a word only
/// when the word alone is wider than a line. Never empty (an empty text is one empty
/// line).
pub(crate) fn wrap(s: &str, max: f32, size: f32, bold: bool) -> Vec<String> {
    let s = latin1(s);
    let fits = |t: &str| width(t, size, bold) <= max;
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in s.split_whitespace() {
        let joined = if line.is_empty() {
            word.to_owned()
        } else {
            format!("{line} {word}")
        };
        if fits(&joined) {
            line = joined;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        // A word wider than a line: as many characters as fit, then the rest.
        for c in word.chars() {
            line.push(c);
            if !fits(&line) && line.chars().count() > 1 {
                line.pop();
                lines.push(std::mem::take(&mut line));
                line.push(c);
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// `1234567` as `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in binary units (`0 B`, `1.50 KiB`): the one formatter Coffer writes bytes with.
pub(crate) use coffer_domain::units::human_bytes as bytes;

/// A duration in milliseconds as `850 ms`, `12.3 s`, `4m 05s`, `2h 03m`.
pub(crate) fn duration(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms} ms");
    }
    let secs = ms / 1000;
    if secs < 60 {
        return format!("{}.{} s", secs, (ms % 1000) / 100);
    }
    if secs < 3600 {
        return format!("{}m {:02}s", secs / 60, secs % 60);
    }
    format!("{}h {:02}m", secs / 3600, (secs % 3600) / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_latin1_reaches_the_page() {
        assert_eq!(latin1("Grüße, ☃ 日本\tx"), "Grüße, ? ?? x");
    }

    #[test]
    fn long_text_is_cut_to_fit() {
        let s = fit("a very long source name indeed", 40.0, 8.0, false);
        assert!(s.ends_with("..."), "{s}");
        assert!(width(&s, 8.0, false) <= 40.0);
        assert_eq!(fit("short", 100.0, 8.0, false), "short");
    }

    #[test]
    fn text_wraps_at_spaces_within_the_width() {
        let note = "Only the newest 2,000 are listed here; 1,234 older ones are left out. \
                    The CSV export (GET /api/export/csv, coffer report csv) has them all.";
        let lines = wrap(note, 200.0, 9.0, false);
        assert!(lines.len() >= 3, "{lines:?}");
        for line in &lines {
            assert!(width(line, 9.0, false) <= 200.0, "{line:?}");
        }
        // Nothing lost or cut mid-word: the words are all there, in order.
        assert_eq!(
            lines.join(" ").split(' ').collect::<Vec<_>>(),
            note.split_whitespace().collect::<Vec<_>>()
        );
        // A word wider than a line is broken where it must be.
        let long = "x".repeat(200);
        let lines = wrap(&format!("source {long}"), 100.0, 10.0, false);
        assert_eq!(lines[0], "source");
        assert!(lines.len() > 2, "{lines:?}");
        assert!(lines.iter().all(|l| width(l, 10.0, false) <= 100.0));
        assert_eq!(lines[1..].concat(), long);
        assert_eq!(wrap("", 100.0, 9.0, false), [""]);
        assert_eq!(wrap("short", 100.0, 9.0, false), ["short"]);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(150 * 1024 * 1024), "150 MiB");
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_345), "12.3 s");
        assert_eq!(duration(245_000), "4m 05s");
        assert_eq!(duration(7_380_000), "2h 03m");
    }
}

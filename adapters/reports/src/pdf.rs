//! The PDF report, drawn with printpdf's page operations: text in the standard
//! Helvetica fonts (real text, extractable), rules and bars as paths.
//!
//! Layout (A4 portrait, 15 mm margins): page 1 has the title, the period, the summary
//! figures and two charts (stored bytes per day; snapshots per day by status); the
//! backup history table starts on a new page and flows over as many as it needs, its
//! header repeated on each; the audit summary follows. Every page ends with
//! "Page N of M", written once the number of pages is known. Paragraphs and the header's
//! lines wrap to the content width; table cells are shortened with `...`.
//!
//! A report limited to one source still shows the storage figures (bytes used, dedup
//! ratio, the stored-bytes chart) of the whole repository, since sources share their
//! deduplicated data: those are labelled "all sources" there.

use chrono::{DateTime, Datelike as _, NaiveDate, TimeDelta, Timelike as _, Utc};
use coffer_domain::reports::{
    DailyBackups, FAILED as FAILED_STATUS, PDF_HISTORY_ROWS, RenderError, ReportData,
};
use printpdf::{
    BuiltinFont, Color, Line, LinePoint, Mm, Op, PaintMode, PdfDocument, PdfFontHandle, PdfPage,
    PdfSaveOptions, Point, Pt, Rect, Rgb, TextItem,
};

use crate::text::{bytes, duration, fit, latin1, thousands, width, wrap};

const PAGE_W: f32 = 595.28;
const PAGE_H: f32 = 841.89;
const MARGIN: f32 = 42.5;
const TOP: f32 = PAGE_H - MARGIN;
/// The lowest line of content; the footer lives below it.
const BOTTOM: f32 = MARGIN + 24.0;
const CONTENT_W: f32 = PAGE_W - 2.0 * MARGIN;

const TITLE: &str = "Coffer backup report";

#[derive(Clone, Copy)]
struct Rgb3(f32, f32, f32);

const INK: Rgb3 = Rgb3(0.13, 0.15, 0.18);
const MUTED: Rgb3 = Rgb3(0.42, 0.45, 0.50);
const RULE: Rgb3 = Rgb3(0.84, 0.86, 0.89);
const ZEBRA: Rgb3 = Rgb3(0.965, 0.971, 0.978);
const PANEL: Rgb3 = Rgb3(0.945, 0.953, 0.965);
const ACCENT: Rgb3 = Rgb3(0.11, 0.33, 0.58);
const OK: Rgb3 = Rgb3(0.20, 0.58, 0.35);
const PARTIAL: Rgb3 = Rgb3(0.91, 0.62, 0.13);
const OTHER: Rgb3 = Rgb3(0.60, 0.62, 0.66);
const FAILED: Rgb3 = Rgb3(0.78, 0.22, 0.20);

fn color(c: Rgb3) -> Color {
    Color::Rgb(Rgb::new(c.0, c.1, c.2, None))
}

fn status_color(status: &str) -> Rgb3 {
    match status {
        "ok" => OK,
        "partial" => PARTIAL,
        FAILED_STATUS => FAILED,
        _ => OTHER,
    }
}

/// Stacking and legend order: ok at the bottom, then partial, failed, anything else.
fn status_rank(status: &str) -> u8 {
    match status {
        "ok" => 0,
        "partial" => 1,
        FAILED_STATUS => 2,
        _ => 3,
    }
}

/// Pages being drawn, and where the next line goes on the last one.
struct Doc {
    pages: Vec<Vec<Op>>,
    y: f32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
    Center,
}

impl Doc {
    fn new() -> Self {
        Self {
            pages: vec![Vec::new()],
            y: TOP,
        }
    }

    fn ops(&mut self) -> &mut Vec<Op> {
        if self.pages.is_empty() {
            self.pages.push(Vec::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = TOP;
    }

    /// Starts a new page unless `height` still fits on this one.
    fn ensure(&mut self, height: f32) -> bool {
        if self.y - height < BOTTOM {
            self.new_page();
            true
        } else {
            false
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn text_at(&mut self, x: f32, y: f32, size: f32, bold: bool, ink: Rgb3, align: Align, s: &str) {
        let s = latin1(s);
        let w = width(&s, size, bold);
        let x = match align {
            Align::Left => x,
            Align::Right => x - w,
            Align::Center => x - w / 2.0,
        };
        let font = if bold {
            BuiltinFont::HelveticaBold
        } else {
            BuiltinFont::Helvetica
        };
        self.ops().extend([
            Op::StartTextSection,
            Op::SetFillColor { col: color(ink) },
            Op::SetFont {
                font: PdfFontHandle::Builtin(font),
                size: Pt(size),
            },
            Op::SetTextCursor {
                pos: Point { x: Pt(x), y: Pt(y) },
            },
            Op::ShowText {
                items: vec![TextItem::Text(s)],
            },
            Op::EndTextSection,
        ]);
    }

    fn text(&mut self, x: f32, y: f32, size: f32, bold: bool, ink: Rgb3, s: &str) {
        self.text_at(x, y, size, bold, ink, Align::Left, s);
    }

    fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, fill: Rgb3) {
        self.ops().extend([
            Op::SetFillColor { col: color(fill) },
            Op::DrawRectangle {
                rectangle: Rect {
                    x: Pt(x),
                    y: Pt(y),
                    width: Pt(w),
                    height: Pt(h),
                    mode: Some(PaintMode::Fill),
                    winding_order: None,
                },
            },
        ]);
    }

    fn line(&mut self, (x1, y1): (f32, f32), (x2, y2): (f32, f32), thickness: f32, ink: Rgb3) {
        let point = |x: f32, y: f32| LinePoint {
            p: Point { x: Pt(x), y: Pt(y) },
            bezier: false,
        };
        self.ops().extend([
            Op::SetOutlineColor { col: color(ink) },
            Op::SetOutlineThickness { pt: Pt(thickness) },
            Op::DrawLine {
                line: Line {
                    points: vec![point(x1, y1), point(x2, y2)],
                    is_closed: false,
                },
            },
        ]);
    }

    /// A section heading, with room below it.
    fn heading(&mut self, s: &str) {
        self.ensure(60.0);
        self.y -= 16.0;
        self.text(MARGIN, self.y, 13.0, true, ACCENT, s);
        self.y -= 6.0;
        self.line((MARGIN, self.y), (MARGIN + CONTENT_W, self.y), 0.6, ACCENT);
        self.y -= 14.0;
    }

    /// A paragraph of body text, wrapped to the content width.
    fn para(&mut self, s: &str, ink: Rgb3) {
        for line in wrap(s, CONTENT_W, 9.0, false) {
            self.ensure(14.0);
            self.text(MARGIN, self.y, 9.0, false, ink, &line);
            self.y -= 13.0;
        }
    }

    /// Lines of `s` wrapped to the content width at `size`, `step` apart.
    fn wrapped(&mut self, s: &str, size: f32, ink: Rgb3, step: f32) {
        for line in wrap(s, CONTENT_W, size, false) {
            self.text(MARGIN, self.y, size, false, ink, &line);
            self.y -= step;
        }
    }
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The last day of a half-open period.
fn last_day(data: &ReportData) -> NaiveDate {
    let end = data.period.to - TimeDelta::microseconds(1);
    end.date_naive().max(data.period.from.date_naive())
}

/// Every page's drawing operations.
fn layout(data: &ReportData) -> Doc {
    let mut doc = Doc::new();
    header(&mut doc, data);
    summary(&mut doc, data);
    storage_chart(&mut doc, data);
    daily_chart(&mut doc, data);
    doc.new_page();
    history(&mut doc, data);
    audit(&mut doc, data);
    footers(&mut doc, data);
    doc
}

pub(crate) fn render(data: &ReportData) -> Result<Vec<u8>, RenderError> {
    let mut doc = layout(data);

    let mut pdf = PdfDocument::new(TITLE);
    let stamp = pdf_date(data.generated_at);
    let info = &mut pdf.metadata.info;
    info.creation_date = stamp;
    info.modification_date = stamp;
    info.metadata_date = stamp;
    "Coffer".clone_into(&mut info.creator);
    "Coffer (printpdf)".clone_into(&mut info.producer);
    info.author = latin1(&data.generated_by);
    info.subject = format!(
        "Backups from {} to {}",
        when(data.period.from),
        when(data.period.to)
    );
    let pages = std::mem::take(&mut doc.pages)
        .into_iter()
        .map(|ops| PdfPage::new(Mm(210.0), Mm(297.0), ops))
        .collect();
    pdf.with_pages(pages);
    let mut warnings = Vec::new();
    let bytes = pdf.save(&PdfSaveOptions::default(), &mut warnings);
    if bytes.is_empty() {
        return Err(RenderError::Render(format!(
            "printpdf produced no document ({} warnings)",
            warnings.len()
        )));
    }
    Ok(bytes)
}

fn pdf_date(t: DateTime<Utc>) -> printpdf::DateTime {
    let small = |v: u32| u8::try_from(v).unwrap_or(0);
    printpdf::DateTime {
        date: printpdf::Date {
            year: t.year(),
            month: small(t.month()),
            day: small(t.day()),
        },
        time: printpdf::Time {
            hour: small(t.hour()),
            minute: small(t.minute()),
            second: small(t.second()),
            millisecond: 0,
        },
        offset: printpdf::Offset {
            hours: 0,
            minutes: 0,
            seconds: 0,
            milliseconds: 0,
        },
    }
}

fn header(doc: &mut Doc, data: &ReportData) {
    doc.rect(MARGIN, doc.y - 4.0, 36.0, 4.0, ACCENT);
    doc.y -= 26.0;
    doc.text(MARGIN, doc.y, 22.0, true, INK, TITLE);
    doc.y -= 20.0;
    let source = data
        .source
        .as_deref()
        .map_or_else(|| "all sources".to_owned(), |s| format!("source {s}"));
    doc.wrapped(
        &format!(
            "Period: {} to {} ({source})",
            when(data.period.from),
            when(data.period.to)
        ),
        10.0,
        INK,
        14.0,
    );
    doc.wrapped(
        &format!(
            "Generated at {} by {}",
            data.generated_at.format("%Y-%m-%d %H:%M:%S UTC"),
            data.generated_by
        ),
        9.0,
        MUTED,
        12.0,
    );
    if data.source.is_some() {
        doc.wrapped(
            "Backups, history and the audit summary are this source's; storage used, the \
             dedup ratio and the stored-bytes chart are the whole repository's (all \
             sources), since sources share their deduplicated data.",
            8.0,
            MUTED,
            11.0,
        );
    }
    doc.line((MARGIN, doc.y), (MARGIN + CONTENT_W, doc.y), 0.5, RULE);
    doc.y -= 16.0;
}

fn percent(v: f64) -> String {
    if v >= 99.95 || v == 0.0 {
        format!("{v:.0} %")
    } else {
        format!("{v:.1} %")
    }
}

fn summary(doc: &mut Doc, data: &ReportData) {
    let by_status = if data.backups_by_status.is_empty() {
        "none in this period".to_owned()
    } else {
        data.backups_by_status
            .iter()
            .map(|(s, n)| format!("{} {s}", thousands(*n)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let storage = match data.quota_bytes {
        Some(q) if q > 0 => {
            #[allow(clippy::cast_precision_loss)]
            let used = data.stored_bytes as f64 * 100.0 / q as f64;
            format!("{} of {} quota", percent(used), bytes(q))
        }
        _ => "no quota set".to_owned(),
    };
    // A per-source report shows the repository's storage figures: said on the card.
    let (storage_label, dedup_label) = if data.source.is_some() {
        ("Storage used (all sources)", "Dedup ratio (all sources)")
    } else {
        ("Storage used", "Dedup ratio")
    };
    let cards: [(&str, String, String); 6] = [
        (
            "Backups in period",
            thousands(data.backups_in_period()),
            by_status,
        ),
        (
            "Success rate",
            data.success_rate_percent()
                .map_or_else(|| "n/a".to_owned(), percent),
            "ok / (ok + partial + failed) backups".to_owned(),
        ),
        (storage_label, bytes(data.stored_bytes), storage),
        (
            dedup_label,
            data.dedup_ratio()
                .map_or_else(|| "n/a".to_owned(), |r| format!("{r:.2} x")),
            "logical bytes / stored bytes".to_owned(),
        ),
        (
            "Data backed up",
            bytes(data.logical_bytes_in_period),
            "logical size of the period's snapshots".to_owned(),
        ),
        (
            "Added to storage",
            bytes(data.stored_bytes_added_in_period),
            "new bytes stored, after dedup".to_owned(),
        ),
    ];
    let gap = 10.0;
    let w = (CONTENT_W - 2.0 * gap) / 3.0;
    let h = 54.0;
    for (row, chunk) in cards.chunks(3).enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let top = doc.y - row as f32 * (h + gap);
        for (i, (label, value, note)) in chunk.iter().enumerate() {
            #[allow(clippy::cast_precision_loss)]
            let x = MARGIN + i as f32 * (w + gap);
            doc.rect(x, top - h, w, h, PANEL);
            doc.rect(x, top - h, 2.5, h, ACCENT);
            doc.text(
                x + 10.0,
                top - 14.0,
                8.0,
                false,
                MUTED,
                &fit(label, w - 16.0, 8.0, false),
            );
            doc.text(
                x + 10.0,
                top - 33.0,
                15.0,
                true,
                INK,
                &fit(value, w - 16.0, 15.0, true),
            );
            doc.text(
                x + 10.0,
                top - 46.0,
                7.0,
                false,
                MUTED,
                &fit(note, w - 16.0, 7.0, false),
            );
        }
    }
    doc.y -= 2.0 * h + gap + 18.0;
}

/// A round step near `raw`: 1, 2, 2.5 or 5 times a power of ten.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 2.5 {
        2.5
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// A chart's frame: title, y-axis ticks with labels, x-axis labels for the first, middle
/// and last day. Returns the plot area (x, y, width, height).
struct Frame {
    x: f32,
    y: f32,
    w: f32,
    h: f32,
}

const CHART_H: f32 = 120.0;
const AXIS_W: f32 = 50.0;

fn chart_frame(doc: &mut Doc, title: &str, subtitle: &str) -> Frame {
    doc.ensure(CHART_H + 60.0);
    doc.text(MARGIN, doc.y, 11.0, true, INK, title);
    doc.y -= 12.0;
    doc.text(MARGIN, doc.y, 8.0, false, MUTED, subtitle);
    doc.y -= 12.0;
    let frame = Frame {
        x: MARGIN + AXIS_W,
        y: doc.y - CHART_H,
        w: CONTENT_W - AXIS_W,
        h: CHART_H,
    };
    doc.y -= CHART_H + 30.0;
    frame
}

/// Horizontal grid lines and their labels, for values `0..=top` in `ticks` steps.
fn y_axis(doc: &mut Doc, f: &Frame, step: f64, ticks: u32, label: impl Fn(f64) -> String) {
    for i in 0..=ticks {
        #[allow(clippy::cast_precision_loss)]
        let y = f.y + f.h * i as f32 / ticks as f32;
        let ink = if i == 0 { MUTED } else { RULE };
        doc.line(
            (f.x, y),
            (f.x + f.w, y),
            if i == 0 { 0.8 } else { 0.4 },
            ink,
        );
        doc.text_at(
            f.x - 6.0,
            y - 2.5,
            7.0,
            false,
            MUTED,
            Align::Right,
            &label(step * f64::from(i)),
        );
    }
}

/// Day labels under the x-axis: first, middle and last slot.
fn x_axis(doc: &mut Doc, f: &Frame, first: NaiveDate, slots: u32, days_per_slot: u32) {
    #[allow(clippy::cast_precision_loss)]
    let slot_w = f.w / slots.max(1) as f32;
    let mut marks = vec![0, slots.saturating_sub(1)];
    if slots > 2 {
        marks.insert(1, slots / 2);
    }
    marks.dedup();
    for (n, slot) in marks.iter().enumerate() {
        let day = first + TimeDelta::days(i64::from(slot * days_per_slot));
        #[allow(clippy::cast_precision_loss)]
        let centre = f.x + slot_w * (*slot as f32 + 0.5);
        let align = match (n, marks.len()) {
            (0, _) => Align::Left,
            (n, len) if n + 1 == len => Align::Right,
            _ => Align::Center,
        };
        let x = match align {
            Align::Left => (centre - slot_w / 2.0).max(f.x),
            Align::Right => (centre + slot_w / 2.0).min(f.x + f.w),
            Align::Center => centre,
        };
        doc.text_at(
            x,
            f.y - 11.0,
            7.0,
            false,
            MUTED,
            align,
            &day.format("%Y-%m-%d").to_string(),
        );
    }
}

fn empty_chart(doc: &mut Doc, f: &Frame, message: &str) {
    doc.rect(f.x, f.y, f.w, f.h, ZEBRA);
    doc.text_at(
        f.x + f.w / 2.0,
        f.y + f.h / 2.0 - 4.0,
        10.0,
        true,
        MUTED,
        Align::Center,
        message,
    );
}

#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
fn storage_chart(doc: &mut Doc, data: &ReportData) {
    let first = data.period.from.date_naive();
    let days = u32::try_from((last_day(data) - first).num_days() + 1).unwrap_or(1);
    let subtitle = if data.source.is_some() {
        "Bytes in storage of the whole repository (all sources) at the end of each day (UTC)"
    } else {
        "Bytes in storage at the end of each day (UTC), after dedup and compression"
    };
    let f = chart_frame(doc, "Stored bytes over time", subtitle);
    let samples: Vec<_> = data
        .storage_history
        .iter()
        .filter(|s| s.day >= first && s.day <= last_day(data))
        .collect();
    let Some(max) = samples.iter().map(|s| s.stored_bytes).max() else {
        empty_chart(doc, &f, "No data yet");
        x_axis(doc, &f, first, days, 1);
        return;
    };
    // Ticks in one binary unit, so that labels read 0, 2.5, 5, 7.5, 10 GiB.
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    let mut scale = 1.0f64;
    while (max as f64) / scale >= 1024.0 && unit < units.len() - 1 {
        scale *= 1024.0;
        unit += 1;
    }
    let step = nice_step((max as f64 / scale) / 4.0).max(if unit == 0 { 1.0 } else { 0.01 });
    let ticks = ((max as f64 / scale) / step).ceil().max(1.0) as u32;
    let top = step * f64::from(ticks) * scale;
    y_axis(doc, &f, step, ticks, |v| {
        let text = format!("{v:.2}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        format!("{text} {}", units[unit])
    });
    let slot_w = f.w / days as f32;
    let bar_w = (slot_w * 0.7).clamp(0.6, 16.0);
    let mut previous: Option<(f32, f32)> = None;
    for s in samples {
        let slot = (s.day - first).num_days() as f32;
        let x = f.x + slot_w * (slot + 0.5);
        let h = (s.stored_bytes as f64 / top) as f32 * f.h;
        doc.rect(x - bar_w / 2.0, f.y, bar_w, h, Rgb3(0.62, 0.74, 0.87));
        if let Some(p) = previous {
            doc.line(p, (x, f.y + h), 1.2, ACCENT);
        }
        previous = Some((x, f.y + h));
    }
    x_axis(doc, &f, first, days, 1);
}

#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
fn daily_chart(doc: &mut Doc, data: &ReportData) {
    let per = data.days_per_bucket.max(1);
    let subtitle = if per == 1 {
        "Backups each day (UTC) by outcome: snapshots by status, failed attempts".to_owned()
    } else {
        format!("Backups per {per} days (UTC) by outcome: snapshots by status, failed attempts")
    };
    let f = chart_frame(doc, "Backups per day", &subtitle);
    let first = data.period.from.date_naive();
    let slots = u32::try_from(data.daily.len()).unwrap_or(1).max(1);
    let max = data
        .daily
        .iter()
        .map(DailyBackups::total)
        .max()
        .unwrap_or(0);
    if max == 0 {
        empty_chart(doc, &f, "No backups in this period");
        x_axis(doc, &f, first, slots, per);
        return;
    }
    let step = nice_step(max as f64 / 4.0).max(1.0).ceil();
    let ticks = (max as f64 / step).ceil().max(1.0) as u32;
    let top = step * f64::from(ticks);
    y_axis(doc, &f, step, ticks, |v| format!("{v:.0}"));
    let slot_w = f.w / slots as f32;
    let bar_w = (slot_w * 0.7).clamp(0.6, 16.0);
    let mut statuses: Vec<&str> = Vec::new();
    for (i, bucket) in data.daily.iter().enumerate() {
        let x = f.x + slot_w * (i as f32 + 0.5) - bar_w / 2.0;
        let mut y = f.y;
        let mut parts: Vec<&(String, u64)> = bucket.by_status.iter().collect();
        parts.sort_by_key(|(s, _)| status_rank(s));
        for (status, n) in parts {
            if *n == 0 {
                continue;
            }
            if !statuses.contains(&status.as_str()) {
                statuses.push(status);
            }
            let h = (*n as f64 / top) as f32 * f.h;
            doc.rect(x, y, bar_w, h, status_color(status));
            y += h;
        }
    }
    // Legend, top right above the plot.
    statuses.sort_by_key(|s| status_rank(s));
    let mut x = f.x + f.w;
    for status in statuses.iter().rev() {
        let w = width(&latin1(status), 7.5, false);
        x -= w;
        doc.text(x, f.y + f.h + 6.0, 7.5, false, INK, status);
        x -= 10.0;
        doc.rect(x, f.y + f.h + 5.5, 7.0, 7.0, status_color(status));
        x -= 12.0;
    }
    x_axis(doc, &f, first, slots, per);
}

/// A column of a table.
struct Col {
    title: &'static str,
    width: f32,
    align: Align,
}

const ROW_TEXT: f32 = 7.5;
const ROW_H: f32 = 13.5;

fn table_header(doc: &mut Doc, cols: &[Col]) {
    doc.rect(MARGIN, doc.y - ROW_H, CONTENT_W, ROW_H, PANEL);
    let mut x = MARGIN;
    for c in cols {
        let (tx, align) = match c.align {
            Align::Right => (x + c.width - 4.0, Align::Right),
            _ => (x + 4.0, Align::Left),
        };
        doc.text_at(
            tx,
            doc.y - ROW_H + 4.3,
            ROW_TEXT,
            true,
            INK,
            align,
            &fit(c.title, c.width - 8.0, ROW_TEXT, true),
        );
        x += c.width;
    }
    doc.y -= ROW_H;
    doc.line((MARGIN, doc.y), (MARGIN + CONTENT_W, doc.y), 0.6, MUTED);
}

/// Rows under a header that is repeated at the top of every page the table reaches;
/// `continued` names the table there.
fn table(
    doc: &mut Doc,
    cols: &[Col],
    continued: &str,
    rows: impl IntoIterator<Item = Vec<String>>,
) {
    doc.ensure(ROW_H * 3.0);
    table_header(doc, cols);
    for (i, row) in rows.into_iter().enumerate() {
        if doc.ensure(ROW_H) {
            doc.text(MARGIN, doc.y - 10.0, 9.0, true, MUTED, continued);
            doc.y -= 20.0;
            table_header(doc, cols);
        }
        if i % 2 == 1 {
            doc.rect(MARGIN, doc.y - ROW_H, CONTENT_W, ROW_H, ZEBRA);
        }
        let mut x = MARGIN;
        for (c, cell) in cols.iter().zip(&row) {
            let text = fit(cell, c.width - 8.0, ROW_TEXT, false);
            let ink = if cell == "failed" { FAILED } else { INK };
            let tx = match c.align {
                Align::Right => x + c.width - 4.0,
                _ => x + 4.0,
            };
            doc.text_at(
                tx,
                doc.y - ROW_H + 4.3,
                ROW_TEXT,
                false,
                ink,
                c.align,
                &text,
            );
            x += c.width;
        }
        doc.y -= ROW_H;
        doc.line((MARGIN, doc.y), (MARGIN + CONTENT_W, doc.y), 0.3, RULE);
    }
    doc.y -= 10.0;
}

fn history(doc: &mut Doc, data: &ReportData) {
    doc.heading("Backup history");
    let total = data.history.len() as u64 + data.history_omitted;
    doc.para(
        &format!(
            "{} snapshots started in the period, newest first (failed backups leave no \
             snapshot: they are counted above and listed in the audit trail).",
            thousands(total)
        ),
        INK,
    );
    if data.history_omitted > 0 {
        doc.para(
            &format!(
                "Only the newest {} are listed here; {} older ones are left out. The CSV export \
                 (GET /api/export/csv, coffer report csv) has them all.",
                thousands(PDF_HISTORY_ROWS as u64),
                thousands(data.history_omitted)
            ),
            FAILED,
        );
    }
    doc.y -= 4.0;
    if data.history.is_empty() {
        doc.para("No snapshots in this period.", MUTED);
        return;
    }
    let cols = [
        Col {
            title: "Started (UTC)",
            width: 82.0,
            align: Align::Left,
        },
        Col {
            title: "Source",
            width: 112.0,
            align: Align::Left,
        },
        Col {
            title: "Status",
            width: 42.0,
            align: Align::Left,
        },
        Col {
            title: "Duration",
            width: 46.0,
            align: Align::Right,
        },
        Col {
            title: "Files",
            width: 48.0,
            align: Align::Right,
        },
        Col {
            title: "Size",
            width: 58.0,
            align: Align::Right,
        },
        Col {
            title: "Added",
            width: 58.0,
            align: Align::Right,
        },
        Col {
            title: "Snapshot",
            width: CONTENT_W - 446.0,
            align: Align::Left,
        },
    ];
    // The order the paragraph above states, whatever order the rows came in.
    let mut newest_first: Vec<_> = data.history.iter().collect();
    newest_first.sort_by_key(|e| std::cmp::Reverse((e.created_at, e.id.get())));
    let rows = newest_first.into_iter().map(|e| {
        vec![
            e.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            e.source_name.clone(),
            e.status.as_str().to_owned(),
            duration(e.duration_ms),
            thousands(e.file_count),
            bytes(e.size),
            bytes(e.stored_bytes_added),
            e.snapshot_id.short().to_owned(),
        ]
    });
    table(doc, &cols, "Backup history (continued)", rows);
}

fn audit(doc: &mut Doc, data: &ReportData) {
    let a = &data.audit;
    doc.y -= 6.0;
    doc.heading("Audit summary");
    doc.para(
        &format!(
            "{} audit events in the period, {} of them failed.",
            thousands(a.total),
            thousands(a.failures)
        ),
        INK,
    );
    doc.y -= 4.0;
    if a.total == 0 {
        doc.para("No audit events in this period.", MUTED);
        return;
    }
    let cols = [
        Col {
            title: "Action",
            width: CONTENT_W - 160.0,
            align: Align::Left,
        },
        Col {
            title: "Events",
            width: 80.0,
            align: Align::Right,
        },
        Col {
            title: "Failed",
            width: 80.0,
            align: Align::Right,
        },
    ];
    let rows = a
        .by_action
        .iter()
        .map(|c| vec![c.action.clone(), thousands(c.total), thousands(c.failures)]);
    table(doc, &cols, "Audit summary (continued)", rows);

    doc.ensure(60.0);
    doc.text(MARGIN, doc.y - 4.0, 11.0, true, INK, "Most recent entries");
    doc.y -= 16.0;
    let cols = [
        Col {
            title: "Time (UTC)",
            width: 82.0,
            align: Align::Left,
        },
        Col {
            title: "User",
            width: 88.0,
            align: Align::Left,
        },
        Col {
            title: "Action",
            width: 86.0,
            align: Align::Left,
        },
        Col {
            title: "Resource",
            width: 130.0,
            align: Align::Left,
        },
        Col {
            title: "Outcome",
            width: 50.0,
            align: Align::Left,
        },
        Col {
            title: "Client IP",
            width: CONTENT_W - 436.0,
            align: Align::Left,
        },
    ];
    let rows = a.recent.iter().map(|r| {
        vec![
            r.timestamp.format("%Y-%m-%d %H:%M:%S").to_string(),
            r.entry.username.clone(),
            r.entry.action.clone(),
            r.entry.resource.clone().unwrap_or_default(),
            if r.entry.success { "ok" } else { "failed" }.to_owned(),
            r.entry.client.ip.clone().unwrap_or_default(),
        ]
    });
    table(doc, &cols, "Most recent entries (continued)", rows);
}

fn footers(doc: &mut Doc, data: &ReportData) {
    let count = doc.pages.len();
    let left = format!(
        "{TITLE}  |  {} to {}",
        when(data.period.from),
        when(data.period.to)
    );
    for n in 0..count {
        let mut page = Doc {
            pages: vec![std::mem::take(&mut doc.pages[n])],
            y: 0.0,
        };
        let y = MARGIN;
        page.line(
            (MARGIN, y + 10.0),
            (MARGIN + CONTENT_W, y + 10.0),
            0.4,
            RULE,
        );
        page.text(MARGIN, y, 7.5, false, MUTED, &left);
        page.text_at(
            MARGIN + CONTENT_W,
            y,
            7.5,
            false,
            MUTED,
            Align::Right,
            &format!("Page {} of {count}", n + 1),
        );
        doc.pages[n] = page.pages.pop().unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use coffer_domain::audit::{AuditAction, AuditEntry, AuditRecord};
    use coffer_domain::auth::ClientInfo;
    use coffer_domain::ports::CatalogEntry;
    use coffer_domain::reports::{
        ActionCount, AuditSummary, DailyBackups, ReportPeriod, StorageSample,
    };
    use coffer_domain::{BackupId, SourceId};

    use super::*;

    /// `COFFER_TEST_REQUIRE_ALL=1` (CI) turns a skip into a failure, as in the rest of
    /// the suite (`coffer_db::testing::skip`, which this adapter may not depend on).
    fn skip(test: &str, reason: &str) {
        assert!(
            !std::env::var("COFFER_TEST_REQUIRE_ALL").is_ok_and(|v| v == "1"),
            "{test}: {reason}, and COFFER_TEST_REQUIRE_ALL=1 forbids skipping"
        );
        eprintln!("skipped: {test}: {reason}");
    }

    fn on_path(program: &str) -> Option<std::path::PathBuf> {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find(|p| p.is_file())
        })
    }

    /// The text `pdftotext -layout` reads from `pdf`, or `None` (after a skip) without it.
    fn pdf_text(test: &str, pdf: &[u8]) -> Option<String> {
        let Some(pdftotext) = on_path("pdftotext") else {
            skip(
                test,
                "pdftotext is not installed (Debian: apt-get install poppler-utils)",
            );
            return None;
        };
        let dir =
            std::env::temp_dir().join(format!("coffer-reports-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("report.pdf");
        std::fs::write(&file, pdf).unwrap();
        let out = std::process::Command::new(pdftotext)
            .arg("-layout")
            .arg(&file)
            .arg("-")
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).ok();
        assert!(
            out.status.success(),
            "pdftotext: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn t(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0).unwrap()
    }

    fn snapshot(i: u32, source: &str, status: &str) -> CatalogEntry {
        let day = 1 + i % 28;
        CatalogEntry {
            id: BackupId::new(i64::from(i)),
            snapshot_id: coffer_domain::SnapshotId::parse(&format!("{:064x}", u64::from(i) * 7919))
                .unwrap(),
            source_id: Some(SourceId::new(1)),
            source_name: source.to_owned(),
            size: 3_000_000 + u64::from(i),
            created_at: t(day, i % 24),
            finished_at: Some(t(day, i % 24) + TimeDelta::seconds(42)),
            status: status.parse().unwrap(),
            checksum: String::new(),
            encrypted: true,
            file_count: 1234,
            dir_count: 5,
            bytes_added: 1000,
            stored_bytes_added: 900,
            duration_ms: 42_000,
            warnings: vec![],
            parent_snapshot_id: None,
            protected: false,
            verified_at: None,
            verify_result: None,
            suspicious: None,
        }
    }

    fn report(history: Vec<CatalogEntry>, omitted: u64, samples: bool) -> ReportData {
        let audit_row = |id: i64, action: AuditAction, ok: bool| AuditRecord {
            id,
            timestamp: t(20, 9),
            entry: {
                let e = AuditEntry::new(
                    "alice",
                    action,
                    &ClientInfo {
                        ip: Some("192.0.2.7".to_owned()),
                        user_agent: None,
                        credential: None,
                    },
                )
                .resource("report:pdf");
                if ok { e } else { e.failed() }
            },
            prev_hash: String::new(),
            row_hash: String::new(),
        };
        ReportData {
            period: ReportPeriod {
                from: t(1, 0),
                to: t(31, 0),
            },
            generated_at: t(31, 8),
            generated_by: "alice".to_owned(),
            source: None,
            backups_by_status: vec![("ok".to_owned(), 40), ("partial".to_owned(), 2)],
            logical_bytes_in_period: 126_000_000,
            stored_bytes_added_in_period: 40_000,
            stored_bytes: 50_000_000,
            quota_bytes: Some(200_000_000),
            catalog_logical_bytes: 400_000_000,
            storage_history: if samples {
                (1..=30)
                    .map(|d| StorageSample {
                        day: NaiveDate::from_ymd_opt(2026, 3, d).unwrap(),
                        stored_bytes: u64::from(d) * 1_500_000,
                    })
                    .collect()
            } else {
                vec![]
            },
            daily: (1..=30)
                .map(|d| DailyBackups {
                    day: NaiveDate::from_ymd_opt(2026, 3, d).unwrap(),
                    by_status: vec![
                        ("ok".to_owned(), u64::from(d % 3)),
                        ("partial".to_owned(), u64::from(d % 2)),
                    ],
                })
                .collect(),
            days_per_bucket: 1,
            history,
            history_omitted: omitted,
            audit: AuditSummary {
                total: 3,
                failures: 1,
                by_action: vec![
                    ActionCount {
                        action: "login".to_owned(),
                        total: 2,
                        failures: 1,
                    },
                    ActionCount {
                        action: "export".to_owned(),
                        total: 1,
                        failures: 0,
                    },
                ],
                recent: vec![
                    audit_row(3, AuditAction::Export, true),
                    audit_row(2, AuditAction::Login, false),
                ],
            },
        }
    }

    #[test]
    fn the_report_is_a_pdf_with_real_text_on_every_page() {
        let mut history: Vec<_> = (0..150).map(|i| snapshot(i, "projects", "ok")).collect();
        history[3] = snapshot(3, "Grüße ☃ finance", "partial");
        let pdf = render(&report(history, 1234, true)).unwrap();
        assert!(pdf.starts_with(b"%PDF-"), "not a PDF");
        // To look at it: COFFER_REPORTS_PDF_OUT=/tmp/report.pdf cargo test -p coffer-reports
        if let Some(out) = std::env::var_os("COFFER_REPORTS_PDF_OUT") {
            std::fs::write(out, &pdf).unwrap();
        }
        let Some(text) = pdf_text("the_report_is_a_pdf", &pdf) else {
            return;
        };
        for heading in [
            "Coffer backup report",
            "Period: 2026-03-01 00:00 UTC to 2026-03-31 00:00 UTC",
            "Generated at 2026-03-31 08:00:00 UTC by alice",
            "Backups in period",
            "Success rate",
            "95.2 %",
            "Storage used",
            "Dedup ratio",
            "8.00 x",
            "Stored bytes over time",
            "Backups per day",
            "Backup history",
            "Audit summary",
            "Most recent entries",
            "192.0.2.7",
        ] {
            assert!(text.contains(heading), "the PDF lacks {heading:?}:\n{text}");
        }
        // A known row; outside Latin-1 is a `?`.
        assert!(text.contains("Grüße ? finance"), "{text}");
        assert!(text.contains("1,234 older ones are left out"), "{text}");
        // 150 rows need several pages; each says which of how many it is.
        let pages = text.matches('\u{c}').count().max(1);
        assert!(pages >= 4, "{pages} pages");
        for n in 1..=pages {
            assert!(
                text.contains(&format!("Page {n} of {pages}")),
                "page {n} lacks its number:\n{text}"
            );
        }
        // Newest first, as the page says: the first row is the period's newest snapshot.
        let first_row = text
            .lines()
            .find(|l| l.trim_start().starts_with("2026-03-") && l.contains(":00:00"))
            .unwrap_or_default();
        assert!(first_row.contains("2026-03-28 "), "{first_row}");
        // The header row is repeated on every page of the table.
        assert!(text.matches("Started (UTC)").count() >= 3, "{text}");
        assert!(text.contains("Backup history (continued)"));
    }

    #[test]
    fn no_samples_say_no_data_yet() {
        let pdf = render(&report(vec![], 0, false)).unwrap();
        let Some(text) = pdf_text("no_samples_say_no_data_yet", &pdf) else {
            return;
        };
        assert!(text.contains("No data yet"), "{text}");
        assert!(text.contains("No snapshots in this period."), "{text}");
        assert!(text.contains("Page 1 of 2"), "{text}");
    }

    #[test]
    fn the_creation_date_is_the_generation_time() {
        let pdf = render(&report(vec![], 0, true)).unwrap();
        let raw = String::from_utf8_lossy(&pdf);
        assert!(
            raw.contains("D:20260331080000"),
            "no creation date in the info"
        );
        assert!(!raw.contains("D:1970"), "a 1970 date is left in the info");
    }

    /// Each line of text drawn, by page: (x, y, width, text).
    fn lines(data: &ReportData) -> Vec<Vec<(f32, f32, f32, String)>> {
        layout(data)
            .pages
            .iter()
            .map(|ops| {
                let (mut size, mut bold, mut at) = (0.0, false, (0.0, 0.0));
                let mut out = Vec::new();
                for op in ops {
                    match op {
                        Op::SetFont { font, size: s } => {
                            size = s.0;
                            bold =
                                matches!(font, PdfFontHandle::Builtin(BuiltinFont::HelveticaBold));
                        }
                        Op::SetTextCursor { pos } => at = (pos.x.0, pos.y.0),
                        Op::ShowText { items } => {
                            for item in items {
                                if let TextItem::Text(t) = item {
                                    out.push((at.0, at.1, width(t, size, bold), t.clone()));
                                }
                            }
                        }
                        _ => {}
                    }
                }
                out
            })
            .collect()
    }

    #[test]
    fn long_names_and_notes_wrap_within_the_margins() {
        let long = format!("finance-{}-END", "quarterly-archive".repeat(8));
        let mut data = report(
            (0..30).map(|i| snapshot(i, &long, "ok")).collect(),
            1234,
            true,
        );
        data.source = Some(long.clone());
        data.generated_by = format!("system:{}", "operator".repeat(12));
        let pages = lines(&data);
        for (n, page) in pages.iter().enumerate() {
            for (x, _, w, text) in page {
                assert!(
                    *x >= MARGIN - 0.5 && x + w <= PAGE_W - MARGIN + 0.5,
                    "page {}: {text:?} runs from {x} to {} (content {MARGIN}..{})",
                    n + 1,
                    x + w,
                    PAGE_W - MARGIN
                );
            }
        }
        let all: Vec<&str> = pages.iter().flatten().map(|l| l.3.as_str()).collect();
        let joined = all.join(" ");
        // The header's source name and user are all there, over as many lines as needed.
        assert!(
            all.iter()
                .any(|l| l.starts_with("Period: 2026-03-01 00:00 UTC"))
        );
        assert!(joined.contains("-END)"), "{joined}");
        assert!(joined.contains(&"operator".repeat(2)), "{joined}");
        assert!(
            all.concat()
                .contains(&format!("(source {long})").replace(' ', "")),
            "{joined}"
        );
        // The note on left-out rows is whole, not cut mid-word.
        assert!(
            joined.contains(
                "1,234 older ones are left out. The CSV export (GET /api/export/csv, \
                 coffer report csv) has them all."
            ),
            "{joined}"
        );
    }

    #[test]
    fn a_source_report_labels_the_storage_figures_as_the_repositorys() {
        let mut data = report(vec![], 0, true);
        let all_sources: Vec<String> = lines(&data).concat().into_iter().map(|l| l.3).collect();
        assert!(all_sources.contains(&"Storage used".to_owned()));
        assert!(!all_sources.iter().any(|l| l.starts_with("Storage used (")));
        data.source = Some("finance".to_owned());
        let one: Vec<String> = lines(&data).concat().into_iter().map(|l| l.3).collect();
        for label in ["Storage used (all sources)", "Dedup ratio (all sources)"] {
            assert!(one.contains(&label.to_owned()), "{label}: {one:?}");
        }
        assert!(
            one.iter()
                .any(|l| l.starts_with("Bytes in storage of the whole repository (all sources)")),
            "{one:?}"
        );
        assert!(
            one.join(" ")
                .contains("are the whole repository's (all sources)")
        );
    }

    #[test]
    fn failed_backups_are_drawn_in_the_failed_colour() {
        let mut data = report(vec![], 0, true);
        data.backups_by_status = vec![
            ("failed".to_owned(), 3),
            ("ok".to_owned(), 6),
            ("partial".to_owned(), 1),
        ];
        data.daily[4].by_status.push(("failed".to_owned(), 3));
        let failed = color(FAILED);
        let page = &layout(&data).pages[0];
        let filled_failed = page
            .windows(2)
            .filter(|w| {
                matches!(&w[0], Op::SetFillColor { col } if *col == failed)
                    && matches!(&w[1], Op::DrawRectangle { .. })
            })
            .count();
        assert_eq!(filled_failed, 2, "the bar segment and its legend swatch");
        let text: Vec<String> = lines(&data)[0].iter().map(|l| l.3.clone()).collect();
        assert!(text.contains(&"failed".to_owned()), "legend: {text:?}");
        assert!(text.contains(&"60.0 %".to_owned()), "{text:?}");
        assert!(
            text.contains(&"3 failed, 6 ok, 1 partial".to_owned()),
            "{text:?}"
        );
    }

    #[test]
    fn nice_steps_are_round() {
        assert!((nice_step(0.7) - 1.0).abs() < 1e-9);
        assert!((nice_step(1.3) - 2.0).abs() < 1e-9);
        assert!((nice_step(23.0) - 25.0).abs() < 1e-9);
        assert!((nice_step(420.0) - 500.0).abs() < 1e-9);
        assert!((nice_step(0.0) - 1.0).abs() < 1e-9);
    }
}

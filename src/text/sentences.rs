//! The one sentence splitter. Ingestion cuts chunks at these sentences (and embeds them as
//! sentence vectors); the query path answers from them and verifies against them. Text is
//! first cut into groups of lines (paragraphs, list items, table rows, runs of `key: value`
//! lines, an entry's term apart from its description, a dedent that closes an entry), then
//! each group into Unicode sentences, hard-wrapped lines reading as one. Headings, labels,
//! entry terms and table headers are kept as sentences marked `heading`: context, never an
//! answer alone, and never glued to the sentence after them.

use unicode_segmentation::UnicodeSegmentation;

/// One sentence of a text, as a byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentenceRange {
    pub start: usize,
    pub end: usize,
    /// A heading, label, entry term or table header: context for what follows it.
    pub heading: bool,
    /// The group of lines (paragraph, entry description, list item, row) it belongs to,
    /// numbered from 0 in this text: an answer may go on into the next sentences of its group.
    pub group: usize,
    /// For a table row, the byte range of its table's header row.
    pub header: Option<(usize, usize)>,
}

/// Fragments with fewer words than this ("1.", "Fixed", "No. 5") join the next sentence.
pub const MIN_WORDS: usize = 3;

/// A line of text: byte range of its content (trimmed) and its indentation in columns (tabs
/// to the next multiple of 8, as a terminal shows them).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line {
    pub start: usize,
    pub end: usize,
    pub indent: usize,
}

/// The lines of `text`; blank lines are `None`.
pub(crate) fn lines(text: &str) -> Vec<Option<Line>> {
    let mut out = Vec::new();
    let mut at = 0;
    for raw in text.split_inclusive('\n') {
        let content = raw.trim_end_matches(['\n', '\r']);
        let trimmed = content.trim_start();
        if trimmed.trim().is_empty() {
            out.push(None);
        } else {
            let lead = content.len() - trimmed.len();
            let mut indent = 0;
            for c in content[..lead].chars() {
                indent = if c == '\t' {
                    (indent / 8 + 1) * 8
                } else {
                    indent + 1
                };
            }
            out.push(Some(Line {
                start: at + lead,
                end: at + lead + trimmed.trim_end().len(),
                indent,
            }));
        }
        at += raw.len();
    }
    out
}

/// Whether `line` opens a list item (`- `, `* `, `• `, `+ `, `1. `, `2) `).
pub fn list_item(line: &str) -> bool {
    let line = line.trim_start_matches([' ', '\t']);
    if ["- ", "* ", "• ", "+ "].iter().any(|m| line.starts_with(m)) {
        return true;
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    digits > 0 && (line[digits..].starts_with(". ") || line[digits..].starts_with(") "))
}

/// Whether the line is a table row (`| a | b |`).
pub fn table_row(line: &str) -> bool {
    let l = line.trim();
    l.starts_with('|') && l.len() > 1 && l[1..].contains('|')
}

/// Whether the row only separates a table's header from its body (`|---|:--:|`).
fn separator_row(line: &str) -> bool {
    table_row(line)
        && line
            .trim()
            .chars()
            .all(|c| matches!(c, '|' | '-' | ':' | ' ' | '\t' | '+'))
}

/// The length of the key of a `key: value` line (`gc.auto: When …`, `Default: 4096`), if it
/// is one: a key of at most four words that is not a URL scheme.
pub fn key_length(line: &str) -> Option<usize> {
    let colon = line.find(": ")?;
    let key = &line[..colon];
    let words = key.split_whitespace().count();
    let ok = (1..=4).contains(&words)
        && colon <= 40
        && !key.starts_with(['-', '*', '•', '+', '|', '#'])
        && !key.ends_with(['.', ',', ';', ')'])
        && !line[colon + 2..].trim().is_empty()
        && key
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '`');
    ok.then_some(colon)
}

/// Whether a line reads as an entry's term (an option such as `-f, --file file`, a key such as
/// `gc.auto` or `ControlPersist`, a label): short, no list marker, not ending like a sentence.
pub fn term_like(line: &str) -> bool {
    let line = line.trim();
    let words = line.split_whitespace().count();
    (1..=8).contains(&words)
        && line.chars().count() <= 60
        && !list_item(line)
        && !table_row(line)
        && !line.ends_with(['.', ',', ';', '!', '?'])
}

/// Columns that `text` takes on a terminal when it starts at column `from` (tabs to the next
/// multiple of 8).
pub(crate) fn columns(text: &str, from: usize) -> usize {
    text.chars().fold(
        from,
        |at, c| {
            if c == '\t' {
                (at / 8 + 1) * 8
            } else {
                at + 1
            }
        },
    )
}

/// An entry with its description on the same line after a gap: an option as `--help` prints
/// it (`-a, --all   do not ignore …`), or a key whose description goes on below, aligned with
/// where it started (`Host    Restricts the following …`). `indent` is the line's column and
/// `next_indent` the next line's. Returns the byte length of the term and where the
/// description starts.
pub fn inline_term(
    line: &str,
    indent: usize,
    next_indent: Option<usize>,
) -> Option<(usize, usize)> {
    let option = line.starts_with('-') && !line.starts_with("- ") && !line.starts_with("--- ");
    let key = line.chars().next().is_some_and(char::is_alphanumeric);
    if !option && !key {
        return None;
    }
    let bytes = line.as_bytes();
    let gap = (0..bytes.len())
        .find(|&i| bytes[i] == b'\t' || (bytes[i] == b' ' && bytes.get(i + 1) == Some(&b' ')))?;
    let mut desc = gap;
    while desc < bytes.len() && (bytes[desc] == b' ' || bytes[desc] == b'\t') {
        desc += 1;
    }
    let term = &line[..gap];
    let good = gap <= 40
        && line[desc..].split_whitespace().count() >= 2
        && term_like(term)
        && (option
            || (!term.contains(char::is_whitespace)
                && next_indent == Some(columns(&line[..desc], indent))));
    good.then_some((gap, desc))
}

/// Whether a line is written in capitals (`DESCRIPTION`, `EXIT STATUS`): a man page's or a
/// plain-text section heading when short.
pub fn shouted(line: &str) -> bool {
    line.chars().any(char::is_alphabetic)
        && !line.chars().any(char::is_lowercase)
        && line.split_whitespace().count() <= 6
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GroupKind {
    Prose,
    /// One `key: value` line of a run of them: one sentence, whether or not it ends as one.
    Keyed,
    Heading,
    Row(Option<(usize, usize)>),
}

/// Cuts `text` into groups of lines: (start, end, kind) byte ranges.
fn groups(text: &str) -> Vec<(usize, usize, GroupKind)> {
    let lines = lines(text);
    let mut out: Vec<(usize, usize, GroupKind)> = Vec::new();
    // The group being built: its first line's index and its last line.
    let mut open: Option<(usize, Line)> = None;
    let mut previous: Option<(usize, Line)> = None;
    let mut header: Option<(usize, usize)> = None;
    // Whether the open group is one `key: value` line.
    let mut keyed = false;
    let close = |open: &mut Option<(usize, Line)>,
                 last: Option<(usize, Line)>,
                 keyed: bool,
                 out: &mut Vec<(usize, usize, GroupKind)>| {
        if let (Some((_, first_line)), Some((_, last_line))) = (open.take(), last) {
            let kind = if keyed {
                GroupKind::Keyed
            } else {
                GroupKind::Prose
            };
            out.push((first_line.start, last_line.end, kind));
        }
    };
    for (k, line) in lines.iter().enumerate() {
        let Some(line) = *line else {
            close(&mut open, previous, keyed, &mut out);
            previous = None;
            header = None;
            keyed = false;
            continue;
        };
        let content = &text[line.start..line.end];
        let next = lines.get(k + 1).copied().flatten();
        // A line of `===` or `---` under a one-line group underlines a heading.
        let underline = content.len() >= 3
            && (content.chars().all(|c| c == '=') || content.chars().all(|c| c == '-'));
        if underline {
            if let (Some((first, first_line)), Some((last, _))) = (open, previous) {
                if first == last {
                    open = None;
                    out.push((first_line.start, first_line.end, GroupKind::Heading));
                    previous = None;
                    keyed = false;
                    continue;
                }
            }
        }
        // Table rows: one group each; the row above a separator row is the header.
        if table_row(content) {
            close(&mut open, previous, keyed, &mut out);
            previous = None;
            keyed = false;
            if separator_row(content) {
                if let Some(last) = out.last_mut() {
                    if let GroupKind::Row(_) = last.2 {
                        last.2 = GroupKind::Heading;
                        header = Some((last.0, last.1));
                    }
                }
                continue;
            }
            out.push((line.start, line.end, GroupKind::Row(header)));
            continue;
        }
        let key_run = key_length(content).is_some()
            && (previous.is_some_and(|(_, p)| key_length(&text[p.start..p.end]).is_some())
                || next.is_some_and(|n| key_length(&text[n.start..n.end]).is_some()));
        // A line after a one-line `key: value` group that is not its wrapped continuation.
        let after_key_run = keyed
            && previous.is_some_and(|(_, p)| line.indent <= p.indent)
            && open.is_some_and(|(f, _)| f + 1 == k);
        let dedent = match (open, previous) {
            (Some((first, _)), Some((pk, p))) => pk != first && line.indent < p.indent,
            _ => false,
        };
        let starts = open.is_none() || list_item(content) || key_run || after_key_run || dedent;
        if starts {
            close(&mut open, previous, keyed, &mut out);
            keyed = key_run;
        }
        // An option with its description on the same line.
        if let Some((term_end, desc)) = inline_term(content, line.indent, next.map(|n| n.indent)) {
            close(&mut open, previous, keyed, &mut out);
            keyed = false;
            out.push((line.start, line.start + term_end, GroupKind::Heading));
            let desc_line = Line {
                start: line.start + desc,
                end: line.end,
                indent: columns(&content[..desc], line.indent),
            };
            open = Some((k, desc_line));
            previous = Some((k, desc_line));
            continue;
        }
        // A term on its own line above its deeper-indented description. The text's first line
        // may be cut from the middle of a line (a chunk that starts inside a paragraph), so
        // there only an option or a single key counts.
        let opens_group = open.is_none();
        let first_line = lines[..k].iter().all(Option::is_none);
        let term = if first_line {
            content.starts_with('-') && !list_item(content) && term_like(content)
                || !content.contains(char::is_whitespace) && term_like(content)
        } else {
            term_like(content)
        };
        if opens_group
            && next.is_some_and(|n| n.indent > line.indent + 1)
            && (term || (shouted(content) && line.indent == 0))
        {
            out.push((line.start, line.end, GroupKind::Heading));
            previous = None;
            continue;
        }
        if open.is_none() {
            open = Some((k, line));
        }
        previous = Some((k, line));
    }
    close(&mut open, previous, keyed, &mut out);
    out
}

fn trim_range(text: &str, start: usize, end: usize) -> (usize, usize) {
    let piece = &text[start..end];
    let lead = piece.len() - piece.trim_start().len();
    let trail = piece.len() - piece.trim_end().len();
    (start + lead, (end - trail).max(start + lead))
}

/// Whether `text` ends as a sentence does.
pub fn ends_sentence(text: &str) -> bool {
    text.trim_end_matches(['"', '\'', ')', ']', '”', '’', '*', '_'])
        .ends_with(['.', '?', '!', '…', ':', ';', '。', '？', '！'])
}

/// The sentences of `text`.
pub fn sentences(text: &str) -> Vec<SentenceRange> {
    let mut out = Vec::new();
    for (group, (g_start, g_end, kind)) in groups(text).into_iter().enumerate() {
        let (g_start, g_end) = trim_range(text, g_start, g_end);
        if g_start >= g_end {
            continue;
        }
        let piece = &text[g_start..g_end];
        let one = |heading: bool, header: Option<(usize, usize)>| SentenceRange {
            start: g_start,
            end: g_end,
            heading,
            group,
            header,
        };
        match kind {
            GroupKind::Heading => {
                out.push(one(true, None));
                continue;
            }
            GroupKind::Row(header) => {
                out.push(one(false, header));
                continue;
            }
            GroupKind::Keyed | GroupKind::Prose => {}
        }
        // A one-line label (`Exit status`, `Version 4.2`); a line of four words or more with
        // a number in it states something (a man page's footer: `GNU coreutils 9.1
        // September 2022 DD(1)`).
        let words = piece.split_whitespace().count();
        let label = !piece.contains('\n')
            && !list_item(piece)
            && !ends_sentence(piece)
            && words <= 12
            && (words < 4 || !piece.chars().any(|c| c.is_ascii_digit() || c == '@'))
            && piece.split_sentence_bounds().nth(1).is_none();
        let capitals = shouted(piece) && !piece.chars().any(|c| c.is_ascii_digit()) || {
            piece.chars().any(char::is_alphabetic)
                && !piece.chars().any(char::is_lowercase)
                && !piece.chars().any(|c| c.is_ascii_digit())
                && piece.split_whitespace().count() <= 12
        };
        if kind == GroupKind::Prose && (piece.starts_with('#') || label || capitals) {
            out.push(one(true, None));
            continue;
        }
        // Hard-wrapped lines read as one; the same byte length keeps offsets.
        let flat = piece.replace(['\n', '\r'], " ");
        let mut pending: Option<usize> = None;
        let mut pieces = Vec::new();
        for (offset, sentence) in flat.split_sentence_bound_indices() {
            let (s, e) = trim_range(&flat, offset, offset + sentence.len());
            if s >= e {
                continue;
            }
            let s = pending.take().unwrap_or(s);
            if flat[s..e].split_whitespace().count() < MIN_WORDS {
                pending = Some(s);
            } else {
                pieces.push((s, e));
            }
        }
        if let Some(s) = pending {
            match pieces.last_mut() {
                Some(last) => last.1 = flat.trim_end().len(),
                None => pieces.push((s, flat.trim_end().len())),
            }
        }
        out.extend(pieces.into_iter().map(|(s, e)| SentenceRange {
            start: g_start + s,
            end: g_start + e,
            heading: false,
            group,
            header: None,
        }));
    }
    out
}

/// The cells of a table row, trimmed.
fn cells(row: &str) -> Vec<String> {
    let row = row.trim().trim_start_matches('|').trim_end_matches('|');
    row.split('|').map(|c| display_text(c.trim())).collect()
}

/// A table row as shown: each cell under its header's name (`Setting: gc.auto; Default:
/// 6700`), or the cells alone when the header does not match.
pub fn display_row(row: &str, header: Option<&str>) -> String {
    let values = cells(row);
    let names = header.map(cells).unwrap_or_default();
    let paired = names.len() == values.len();
    values
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty())
        .map(|(i, v)| match (paired, names.get(i)) {
            (true, Some(n)) if !n.is_empty() => format!("{n}: {v}"),
            _ => v.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A sentence as shown: list markers, heading marks and emphasis removed, white space
/// collapsed.
pub fn display_text(raw: &str) -> String {
    let mut text = raw.trim().trim_start_matches('#').trim_start();
    // Markers of list items, and of a Markdown definition (`: its meaning`).
    for marker in ["- ", "* ", "• ", "+ ", ": "] {
        if let Some(rest) = text.strip_prefix(marker) {
            text = rest;
        }
    }
    let digits = text.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 && (text[digits..].starts_with(". ") || text[digits..].starts_with(") ")) {
        text = &text[digits + 2..];
    }
    text.replace("**", "")
        .replace("__", "")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        // A word that groff broke at a line end with a hyphenation point (U+2010) reads whole.
        .replace("\u{2010} ", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(text: &str) -> Vec<(String, bool, usize)> {
        sentences(text)
            .into_iter()
            .map(|s| (display_text(&text[s.start..s.end]), s.heading, s.group))
            .collect()
    }

    #[test]
    fn a_man_page_term_never_joins_its_description() {
        let text = "OPTIONS\n       -d, --udp\n\t   Use datagrams (UDP) only. By default the connection is tried to the\n\t   syslog port defined in /etc/services, which is often 514.\n\n\t   See also --server and --socket to specify where to connect.\n\n       -f, --file file\n\t   Log the contents of the specified file.";
        let got = shown(text);
        assert_eq!(got[0], ("OPTIONS".into(), true, 0));
        assert_eq!(got[1], ("-d, --udp".into(), true, 1));
        assert_eq!(got[2].0, "Use datagrams (UDP) only.");
        assert_eq!(
            got[3].0,
            "By default the connection is tried to the syslog port defined in /etc/services, which is often 514."
        );
        assert!(!got[2].1 && !got[3].1);
        assert_eq!(got[2].2, got[3].2, "one entry paragraph");
        assert_eq!(got[5], ("-f, --file file".into(), true, got[5].2));
        assert_eq!(got[6].0, "Log the contents of the specified file.");
    }

    #[test]
    fn help_style_options_split_term_from_description() {
        let text = "  -a, --all                  do not ignore entries starting with .\n  -B, --ignore-backups       do not list implied entries ending\n                               with ~";
        let got = shown(text);
        assert_eq!(got[0], ("-a, --all".into(), true, 0));
        assert_eq!(got[1].0, "do not ignore entries starting with .");
        assert!(!got[1].1);
        assert_eq!(got[2].0, "-B, --ignore-backups");
        assert!(got[2].1);
        assert_eq!(got[3].0, "do not list implied entries ending with ~");
    }

    #[test]
    fn a_capital_heading_glued_to_its_body_is_apart() {
        let got = shown("DESCRIPTION\n       logger makes entries in the system log.");
        assert_eq!(got[0], ("DESCRIPTION".into(), true, 0));
        assert_eq!(got[1].0, "logger makes entries in the system log.");
        assert!(!got[1].1);
    }

    #[test]
    fn key_value_lines_are_sentences_of_their_own() {
        let text =
            "Tickets: 12 dollars for adults\nWhen: every Friday night\nThe shuttle leaves at nine.";
        let got = shown(text);
        assert_eq!(got[0].0, "Tickets: 12 dollars for adults");
        assert_eq!(got[1].0, "When: every Friday night");
        assert_eq!(got[2].0, "The shuttle leaves at nine.");
        assert!(got.iter().all(|g| !g.1), "{got:?}");
        assert_ne!(got[0].2, got[1].2);
        // One colon in prose is no key-value run.
        let prose = shown("Note the limit: it is\nfour per day and no more.");
        assert_eq!(prose.len(), 1);
    }

    #[test]
    fn table_rows_carry_their_header() {
        let text = "| Setting | Default |\n|---|---|\n| gc.auto | 6700 |\n| gc.pruneExpire | 2 weeks ago |";
        let got = sentences(text);
        assert_eq!(got.len(), 3);
        assert!(got[0].heading);
        let header = got[1].header.map(|(s, e)| &text[s..e]);
        assert_eq!(header, Some("| Setting | Default |"));
        assert_eq!(
            display_row(&text[got[1].start..got[1].end], header),
            "Setting: gc.auto; Default: 6700"
        );
        assert_eq!(display_row("| a | b | c |", header), "a; b; c");
    }

    #[test]
    fn an_underlined_heading_is_apart_from_its_underline_and_body() {
        let got = shown("A WALKER'S GUIDE TO THE ISLE\n============================\n\nThe Isle lies eleven miles off the coast.");
        assert_eq!(got[0], ("A WALKER'S GUIDE TO THE ISLE".into(), true, 0));
        assert_eq!(got[1].0, "The Isle lies eleven miles off the coast.");
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn words_broken_at_a_line_end_read_whole() {
        assert_eq!(
            display_text("(default: 512); over\u{2010}\n              rides ibs and obs"),
            "(default: 512); overrides ibs and obs"
        );
    }

    #[test]
    fn prose_stays_whole_and_fragments_join() {
        let text = "1. Red light only. After sunset, use only red torches.";
        let got: Vec<&str> = sentences(text)
            .iter()
            .map(|s| &text[s.start..s.end])
            .collect();
        assert_eq!(
            got,
            vec!["1. Red light only.", "After sunset, use only red torches."]
        );
        // A hanging indent of a list item, and a paragraph whose first line is indented.
        let text = "- The lower car park is closed\n  until the end of November.\n\n    Visitors park on the\nupper level instead.";
        let got = shown(text);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got.iter().all(|g| !g.1));
        // A chunk that starts inside a wrapped paragraph: its first line is no term.
        let text =
            "By default the connection is tried to the\n\t   syslog port defined in /etc/services.";
        let got = shown(text);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(!got[0].1);
    }
}

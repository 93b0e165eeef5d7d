//! The layout of plain text read from its lines and their indentation: section headings
//! (`DESCRIPTION`, a capital line at the margin), definition entries (a term such as
//! `-f, --file file`, `gc.auto` or `ControlPersist` above its deeper-indented description, or
//! an option and its description on one line as `--help` prints them) and paragraphs. A saved
//! manual page (`man ls > ls.txt`) is recognised by its header line; its NAME line becomes the
//! title and its running header is left out.

use super::sentences::{columns, inline_term, lines, list_item, shouted, term_like, Line};

/// What a block of plain text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutKind {
    /// A section heading, level 2 (a man page's `OPTIONS`) or 3 (its subsections).
    Heading(u8),
    /// An entry's term at a depth (1 for a top-level entry, 2 for an entry inside one).
    Term(u8),
    /// Body text inside this many entries (0: not in an entry).
    Paragraph(u8),
}

/// One block: `text[start..end]` (bytes, trimmed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayoutBlock {
    pub start: usize,
    pub end: usize,
    pub kind: LayoutKind,
}

/// The layout of a plain text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    pub blocks: Vec<LayoutBlock>,
    /// A manual page's NAME line (`ls - list directory contents`).
    pub title: Option<String>,
    /// Whether the text is a saved manual page.
    pub manual: bool,
}

/// Whether the line is a manual page's running header (`LS(1)  User Commands  LS(1)`).
fn man_header(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    match (words.first(), words.last()) {
        (Some(first), Some(last)) => {
            words.len() >= 2
                && first == last
                && first.ends_with(')')
                && first.contains('(')
                && !first.starts_with('(')
        }
        _ => false,
    }
}

/// Reads the layout of `text`.
pub fn plain_layout(text: &str) -> Layout {
    let lines = lines(text);
    let mut layout = Layout::default();
    let first = lines.iter().position(Option::is_some);
    let skip = first.filter(|&k| {
        let l = lines[k].expect("non-blank");
        man_header(&text[l.start..l.end])
    });
    layout.manual = skip.is_some();

    // Open entries: (term indent, description indent).
    let mut entries: Vec<(usize, usize)> = Vec::new();
    // The open paragraph: its first and last line, and how many entries it lies in.
    let mut open: Option<(Line, Line, u8)> = None;
    let close = |open: &mut Option<(Line, Line, u8)>, blocks: &mut Vec<LayoutBlock>| {
        if let Some((first, last, depth)) = open.take() {
            blocks.push(LayoutBlock {
                start: first.start,
                end: last.end,
                kind: LayoutKind::Paragraph(depth),
            });
        }
    };
    let mut in_name = false;
    let mut name = Vec::new();
    // A line of `=` or `-` under a heading (setext style): not text of its own.
    let underline = |l: &Line| {
        let t = &text[l.start..l.end];
        t.len() >= 3 && (t.chars().all(|c| c == '=') || t.chars().all(|c| c == '-'))
    };
    let mut skip_next = false;
    for (k, line) in lines.iter().enumerate() {
        if Some(k) == skip || std::mem::take(&mut skip_next) {
            continue;
        }
        let Some(line) = *line else {
            close(&mut open, &mut layout.blocks);
            in_name = false;
            continue;
        };
        let content = &text[line.start..line.end];
        let next = lines.get(k + 1).copied().flatten();
        let deeper_next = next.is_some_and(|n| n.indent > line.indent + 1);
        // An entry ends at a line as far left as its term.
        let depth_before = entries.len();
        entries.retain(|&(term, _)| line.indent > term);
        // So does a manual page's paragraph at a line left of its first.
        let left_of_paragraph =
            layout.manual && open.is_some_and(|(first, _, _)| line.indent < first.indent);
        if entries.len() < depth_before || left_of_paragraph {
            close(&mut open, &mut layout.blocks);
        }
        // A heading underlined with `===` (level 1) or `---` (level 2).
        if open.is_none() && term_like(content) && next.is_some_and(|n| underline(&n)) {
            let level = if text[next.expect("checked").start..].starts_with('=') {
                1
            } else {
                2
            };
            entries.clear();
            layout.blocks.push(LayoutBlock {
                start: line.start,
                end: line.end,
                kind: LayoutKind::Heading(level),
            });
            skip_next = true;
            continue;
        }
        if shouted(content) && line.indent == 0 && !content.ends_with(['.', ',', ';']) {
            close(&mut open, &mut layout.blocks);
            entries.clear();
            in_name = layout.manual && content.trim() == "NAME";
            layout.blocks.push(LayoutBlock {
                start: line.start,
                end: line.end,
                kind: LayoutKind::Heading(2),
            });
            continue;
        }
        if in_name {
            name.push(content.to_string());
        }
        // A short title-like line directly above a list (`Security` over `* Fixed …`).
        if !layout.manual
            && open.is_none()
            && content.split_whitespace().count() <= 4
            && term_like(content)
            && content.chars().next().is_some_and(char::is_uppercase)
            && next.is_some_and(|n| n.indent <= line.indent && list_item(&text[n.start..n.end]))
        {
            layout.blocks.push(LayoutBlock {
                start: line.start,
                end: line.end,
                kind: LayoutKind::Heading(3),
            });
            continue;
        }
        // A man page's subsection: a short line left of the body, above deeper text.
        if layout.manual
            && open.is_none()
            && (1..=4).contains(&line.indent)
            && deeper_next
            && term_like(content)
            && !content.starts_with('-')
            && content.chars().next().is_some_and(char::is_uppercase)
        {
            entries.clear();
            layout.blocks.push(LayoutBlock {
                start: line.start,
                end: line.end,
                kind: LayoutKind::Heading(3),
            });
            continue;
        }
        if open.is_none() {
            if let Some((term_end, desc)) =
                inline_term(content, line.indent, next.map(|n| n.indent))
            {
                let depth = entries.len() as u8 + 1;
                layout.blocks.push(LayoutBlock {
                    start: line.start,
                    end: line.start + term_end,
                    kind: LayoutKind::Term(depth),
                });
                let column = columns(&content[..desc], line.indent);
                entries.push((line.indent, column));
                let desc_line = Line {
                    start: line.start + desc,
                    end: line.end,
                    indent: column,
                };
                open = Some((desc_line, desc_line, depth));
                continue;
            }
            if deeper_next && term_like(content) && !list_item(content) {
                let depth = entries.len() as u8 + 1;
                layout.blocks.push(LayoutBlock {
                    start: line.start,
                    end: line.end,
                    kind: LayoutKind::Term(depth),
                });
                entries.push((line.indent, next.map_or(line.indent + 2, |n| n.indent)));
                continue;
            }
        }
        match &mut open {
            Some((first, last, _)) => {
                // A dedent inside a paragraph (not after its first line, which may be
                // indented as a first line is) starts another.
                if last.start != first.start && line.indent < last.indent {
                    close(&mut open, &mut layout.blocks);
                    open = Some((line, line, entries.len() as u8));
                } else {
                    *last = line;
                }
            }
            None => open = Some((line, line, entries.len() as u8)),
        }
    }
    close(&mut open, &mut layout.blocks);
    if layout.manual {
        let joined = name.join(" ");
        let title = joined.split_whitespace().collect::<Vec<_>>().join(" ");
        layout.title = (!title.is_empty()).then_some(title);
    }
    layout
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(text: &str) -> Vec<(LayoutKind, String)> {
        let layout = plain_layout(text);
        layout
            .blocks
            .iter()
            .map(|b| {
                (
                    b.kind,
                    text[b.start..b.end]
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" "),
                )
            })
            .collect()
    }

    const LOGGER: &str = "LOGGER(1)\t\t\t User Commands\t\t\t     LOGGER(1)\n\nNAME\n       logger - enter messages into the system log\n\nDESCRIPTION\n       logger makes entries in the system log.\n\nOPTIONS\n       -d, --udp\n\t   Use datagrams (UDP) only. By default the connection is tried to the\n\t   syslog port defined in /etc/services, which is often 514.\n\n\t   See also --server and --socket to specify where to connect.\n\n       -i\n\t   Log the PID of the logger process with each line.\n\n       Notice that --journald will ignore values of other options.\n   Exit status\n       logger exits 0 on success.\n\nutil-linux 2.38.1\t\t   2022-05-11\t\t\t     LOGGER(1)\n";

    #[test]
    fn a_manual_page_has_headings_entries_and_a_title() {
        let layout = plain_layout(LOGGER);
        assert!(layout.manual);
        assert_eq!(
            layout.title.as_deref(),
            Some("logger - enter messages into the system log")
        );
        let got = shown(LOGGER);
        use LayoutKind::*;
        let expected: Vec<(LayoutKind, &str)> = vec![
            (Heading(2), "NAME"),
            (Paragraph(0), "logger - enter messages into the system log"),
            (Heading(2), "DESCRIPTION"),
            (Paragraph(0), "logger makes entries in the system log."),
            (Heading(2), "OPTIONS"),
            (Term(1), "-d, --udp"),
            (Paragraph(1), "Use datagrams (UDP) only. By default the connection is tried to the syslog port defined in /etc/services, which is often 514."),
            (Paragraph(1), "See also --server and --socket to specify where to connect."),
            (Term(1), "-i"),
            (Paragraph(1), "Log the PID of the logger process with each line."),
            (Paragraph(0), "Notice that --journald will ignore values of other options."),
            (Heading(3), "Exit status"),
            (Paragraph(0), "logger exits 0 on success."),
            (Paragraph(0), "util-linux 2.38.1 2022-05-11 LOGGER(1)"),
        ];
        let got: Vec<(LayoutKind, &str)> = got.iter().map(|(k, t)| (*k, t.as_str())).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn compact_and_help_style_option_lists() {
        let text = "       -A, --catenate\n              Append archive to the end of another archive.\n       -c, --create\n              Create a new archive.\n\n  -a, --all                  do not ignore entries starting with .\n  -B, --ignore-backups       do not list implied entries ending\n                               with ~\n";
        let got = shown(text);
        use LayoutKind::*;
        let kinds: Vec<(LayoutKind, &str)> = got.iter().map(|(k, t)| (*k, t.as_str())).collect();
        assert_eq!(
            kinds,
            vec![
                (Term(1), "-A, --catenate"),
                (
                    Paragraph(1),
                    "Append archive to the end of another archive."
                ),
                (Term(1), "-c, --create"),
                (Paragraph(1), "Create a new archive."),
                (Term(1), "-a, --all"),
                (Paragraph(1), "do not ignore entries starting with ."),
                (Term(1), "-B, --ignore-backups"),
                (Paragraph(1), "do not list implied entries ending with ~"),
            ]
        );
    }

    #[test]
    fn configuration_keys_are_entries() {
        let text = "     Compression\n             Specifies whether to use compression.  The argument must be yes\n             or no (the default).\n\n     ConnectTimeout\n             Specifies the timeout (in seconds) used when connecting.\n";
        let got = shown(text);
        assert_eq!(got[0], (LayoutKind::Term(1), "Compression".into()));
        assert_eq!(got[1].0, LayoutKind::Paragraph(1));
        assert_eq!(got[2], (LayoutKind::Term(1), "ConnectTimeout".into()));
    }

    #[test]
    fn keys_with_their_description_on_the_same_line() {
        let text = "     Host    Restricts the following declarations (up to the next Host or\n             Match keyword) to be only for those hosts.\n\n     Match   Restricts the following declarations.\n\n     Note that   this is prose\n  with a gap.\n";
        let got = shown(text);
        assert_eq!(got[0], (LayoutKind::Term(1), "Host".into()));
        assert_eq!(
            got[1],
            (
                LayoutKind::Paragraph(1),
                "Restricts the following declarations (up to the next Host or Match keyword) to be only for those hosts.".into()
            )
        );
        // Without a continuation aligned with the description, a word and a gap is no term.
        assert_eq!(got[2].0, LayoutKind::Paragraph(0));
        assert_eq!(got[3].0, LayoutKind::Paragraph(0));
    }

    #[test]
    fn underlined_headings_and_titles_over_lists() {
        let text = "RELEASE NOTES\n=============\n\nVersion 3.3.1\n-------------\n\nSecurity\n* Ledger files now use Argon2id.\n* Fixed a crash.\n";
        let got = shown(text);
        use LayoutKind::*;
        assert_eq!(got[0], (Heading(1), "RELEASE NOTES".into()));
        assert_eq!(got[1], (Heading(2), "Version 3.3.1".into()));
        assert_eq!(got[2], (Heading(3), "Security".into()));
        assert_eq!(got[3].0, Paragraph(0));
        assert!(got[3].1.starts_with("* Ledger"));
    }

    #[test]
    fn ordinary_text_is_paragraphs() {
        let text = "Walking the island\n\nThe coast path is 42 km long and\ntakes three days.\n\n- Bring water\n  and a map.\n";
        let got = shown(text);
        assert!(
            got.iter()
                .all(|(k, _)| matches!(k, LayoutKind::Paragraph(0))),
            "{got:?}"
        );
        assert!(!plain_layout(text).manual);
    }
}

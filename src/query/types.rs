//! Answer types: what kind of fact a question asks for (a quantity, a size, a duration, a
//! date, a version, a person, a place, an option, yes or no, a definition, a procedure, a
//! list), and the spans of a sentence that can fill it (numbers with units, sizes such as
//! `32768 bytes` or `4KiB`, durations, dates and times, versions, flags such as `-S` and
//! `--size`, configuration keys, paths, names). The extracted answer prefers a sentence that
//! holds the asked type, goes on into the next sentence of its entry when the best one lacks
//! it, and declines when no candidate can fill it.

use serde::Serialize;

/// What a question asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerType {
    Quantity,
    Size,
    Duration,
    Date,
    Version,
    Person,
    Place,
    Option,
    YesNo,
    Definition,
    Procedure,
    List,
    Other,
}

impl AnswerType {
    /// Every type, in the order reports list them.
    pub const ALL: [AnswerType; 13] = [
        AnswerType::Quantity,
        AnswerType::Size,
        AnswerType::Duration,
        AnswerType::Date,
        AnswerType::Version,
        AnswerType::Person,
        AnswerType::Place,
        AnswerType::Option,
        AnswerType::YesNo,
        AnswerType::Definition,
        AnswerType::Procedure,
        AnswerType::List,
        AnswerType::Other,
    ];

    /// The type's name as question files and reports spell it.
    pub fn name(self) -> &'static str {
        match self {
            AnswerType::Quantity => "quantity",
            AnswerType::Size => "size",
            AnswerType::Duration => "duration",
            AnswerType::Date => "date",
            AnswerType::Version => "version",
            AnswerType::Person => "person",
            AnswerType::Place => "place",
            AnswerType::Option => "option",
            AnswerType::YesNo => "yesno",
            AnswerType::Definition => "definition",
            AnswerType::Procedure => "procedure",
            AnswerType::List => "list",
            AnswerType::Other => "other",
        }
    }

    /// The type named `name` (`yes/no` and `yes_no` read as `yesno`).
    pub fn from_name(name: &str) -> Option<AnswerType> {
        let name = name
            .trim()
            .to_ascii_lowercase()
            .replace(['/', '_', '-', ' '], "");
        AnswerType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether an answer must hold a span of this type (a number, a name, …).
    pub fn typed(self) -> bool {
        matches!(
            self,
            AnswerType::Quantity
                | AnswerType::Size
                | AnswerType::Duration
                | AnswerType::Date
                | AnswerType::Version
                | AnswerType::Person
                | AnswerType::Place
                | AnswerType::Option
        )
    }

    /// Whether its spans are recognised reliably enough that none in any block means the
    /// sources cannot answer: numbers, dates, versions and people (two capitalised words in a
    /// row, or an e-mail address) are; places and options are not (a place can be any
    /// capitalised word, an option any word the program takes).
    pub fn strict(self) -> bool {
        matches!(
            self,
            AnswerType::Quantity
                | AnswerType::Size
                | AnswerType::Duration
                | AnswerType::Date
                | AnswerType::Version
                | AnswerType::Person
        )
    }

    /// Sentences an answer of this type may take: procedures and lists more, others one or
    /// two.
    pub fn max_sentences(self) -> usize {
        match self {
            AnswerType::Procedure | AnswerType::List => 3,
            _ => 2,
        }
    }

    /// How well a span of `kind` fills this type: 1 fully, less for a bare number where a
    /// unit was asked, 0 not at all.
    pub fn fit(self, kind: SpanKind) -> f64 {
        use SpanKind as K;
        match (self, kind) {
            (AnswerType::Quantity, K::Number | K::Size) => 1.0,
            (AnswerType::Quantity, K::Duration) => 0.7,
            (AnswerType::Size, K::Size) => 1.0,
            (AnswerType::Size, K::Number) => 0.6,
            (AnswerType::Size, K::Duration) => 0.3,
            (AnswerType::Duration, K::Duration) => 1.0,
            (AnswerType::Duration, K::Number) => 0.6,
            (AnswerType::Duration, K::Size) => 0.5,
            (AnswerType::Date, K::Date) => 1.0,
            (AnswerType::Date, K::Version) => 0.3,
            (AnswerType::Version, K::Version) => 1.0,
            (AnswerType::Version, K::Number) => 0.4,
            (AnswerType::Person, K::FullName | K::Email) => 1.0,
            (AnswerType::Person, K::Name) => 0.4,
            (AnswerType::Place, K::Path | K::Url) => 1.0,
            (AnswerType::Place, K::Name | K::FullName) => 0.6,
            (AnswerType::Option, K::Option) => 1.0,
            (AnswerType::Option, K::Path) => 0.3,
            _ => 0.0,
        }
    }
}

/// What a span of text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanKind {
    /// A number in digits or words (`514`, `twenty`, `unlimited`).
    Number,
    /// A number with a unit of size or length (`32768 bytes`, `4KiB`, `0.6-metre`).
    Size,
    /// A number with a unit of time, or a frequency (`10 seconds`, `5m`, `daily`).
    Duration,
    /// A year, a date, a month or weekday, a clock time.
    Date,
    /// A version (`2.38.1`, `version 3.5`).
    Version,
    /// A command-line flag or a configuration key (`-S`, `--size`, `gc.auto`,
    /// `ControlPersist`, `$HOME`, `TMPDIR`).
    Option,
    /// A file or folder path (`/etc/ssh/ssh_config`, `~/.ssh/config`).
    Path,
    /// A web address.
    Url,
    /// An e-mail address.
    Email,
    /// A capitalised word that is not the start of the sentence (`Debian`).
    Name,
    /// Two or more capitalised words in a row (`Karel Zak`, `Free Software Foundation`).
    FullName,
}

/// One typed span: its kind and byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub kind: SpanKind,
    pub start: usize,
    pub end: usize,
}

fn has(text: &str, words: &[&str]) -> bool {
    words.iter().any(|w| text.contains(w))
}

/// The type of answer `question` asks for. The question proper is read: its last sentence
/// ("A copy has been running for ages. Which signal …?"), and after a leading clause that
/// sets the scene ("When I give dd a size like 4K, how many bytes …?").
pub fn classify(question: &str) -> AnswerType {
    let asked = question
        .trim()
        .trim_end_matches(['?', ' '])
        .rsplit(". ")
        .next()
        .unwrap_or(question);
    const WH: &[&str] = &[
        "what", "which", "how", "who", "whom", "whose", "where", "when", "is", "are", "can",
        "does", "do", "will", "should",
    ];
    let asked = match asked.split_once(", ") {
        Some((lead, rest))
            if rest
                .split_whitespace()
                .next()
                .is_some_and(|w| WH.contains(&w.to_lowercase().as_str()))
                && lead.split_whitespace().next().is_some_and(|w| {
                    matches!(
                        w.to_lowercase().as_str(),
                        "if" | "when"
                            | "after"
                            | "before"
                            | "once"
                            | "while"
                            | "for"
                            | "with"
                            | "without"
                            | "by"
                            | "in"
                            | "on"
                            | "using"
                            | "since"
                    )
                }) =>
        {
            rest
        }
        _ => asked,
    };
    classify_question(asked)
}

fn classify_question(question: &str) -> AnswerType {
    let lower = format!(
        " {} ",
        question
            .to_lowercase()
            .replace(['?', ',', '!', '"', '“', '”'], " ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    );
    let first = lower.split_whitespace().next().unwrap_or_default();
    // "In which systemd release …", "From what wget version on …", "Since when …"
    let words: Vec<&str> = lower.split_whitespace().collect();
    let release = words.iter().enumerate().any(|(i, w)| {
        matches!(*w, "which" | "what" | "since")
            && words[i + 1..]
                .iter()
                .take(3)
                .any(|n| matches!(*n, "version" | "versions" | "release" | "releases"))
    });
    if release
        || has(
            &lower,
            &[
                " which version",
                " what version",
                " since version",
                " which release",
                " what release",
                " version number",
                " which versions",
            ],
        )
    {
        return AnswerType::Version;
    }
    // "Which option …", "Which journalctl option …", "What login.defs setting …": an option
    // noun within a few words of which/what.
    const OPTION_NOUNS: &[&str] = &[
        "option",
        "options",
        "flag",
        "flags",
        "switch",
        "switches",
        "argument",
        "parameter",
        "setting",
        "settings",
        "key",
        "keyword",
        "directive",
        "variable",
        "command",
        "subcommand",
        "signal",
        "conversion",
        "operand",
        "mode",
    ];
    let asks_which = words.iter().enumerate().any(|(i, w)| {
        matches!(*w, "which" | "what")
            && words[i + 1..]
                .iter()
                .take(4)
                .any(|n| OPTION_NOUNS.contains(n))
            && !words[i + 1..]
                .first()
                .is_some_and(|n| *n == "does" || *n == "is")
    });
    if asks_which || has(&lower, &[" environment variable"]) {
        return AnswerType::Option;
    }
    if has(
        &lower,
        &[
            " how big",
            " how large",
            " what size",
            " which size",
            " how much memory",
            " how much space",
            " how much disk",
            " how much ram",
            " how many bytes",
            " how many kilobytes",
            " how many megabytes",
            " how many characters",
            " how wide",
            " how tall",
            " how high",
            " how deep",
            " how far",
            " size of",
            " block size",
            " buffer size",
            " maximum size",
            " minimum size",
            " default size",
            " what length",
            " how long is the path",
        ],
    ) {
        return AnswerType::Size;
    }
    if has(
        &lower,
        &[
            " how long",
            " how often",
            " how frequently",
            " how soon",
            " how much time",
            " what interval",
            " which interval",
            " what timeout",
            " how many seconds",
            " how many minutes",
            " how many hours",
            " how many days",
            " how many weeks",
            " how many months",
            " how many years",
            " after how",
            " for how long",
            " timeout",
            " time limit",
            " longest gap",
            " shortest interval",
            " longest interval",
            " what delay",
            " how much delay",
        ],
    ) {
        return AnswerType::Duration;
    }
    if first == "when"
        || has(
            &lower,
            &[
                " what year",
                " which year",
                " what date",
                " which date",
                " what day",
                " which day",
                " what time ",
                " since when",
                " how old",
                " in what month",
                " which month",
                " what month",
            ],
        )
    {
        return AnswerType::Date;
    }
    if has(
        &lower,
        &[
            " how many",
            " how much",
            " what number",
            " which number",
            " what percentage",
            " what percent",
            " what proportion",
            " what share",
            " what fraction",
            " what ratio",
            " what rate",
            " which port",
            " what port",
            " what level",
            " which level",
            " what limit",
            " maximum number",
            " minimum number",
            " what exit status",
            " which exit status",
            " what exit code",
            " which exit code",
            " what value",
            " what is the maximum",
            " what is the minimum",
            " what is the limit",
            " smallest",
            " largest",
            " biggest",
            " lowest",
            " highest",
            " minimum",
            " maximum",
            " fewest",
            " most ",
            " at least",
            " at most",
            " up to what",
            " what priority",
            " which priority",
        ],
    ) {
        return AnswerType::Quantity;
    }
    if matches!(first, "who" | "whom" | "whose")
        || has(
            &lower,
            &[
                " which company",
                " what company",
                " which organisation",
                " which organization",
                " what organisation",
                " what organization",
                " which person",
                " which team",
                " what team",
                " author",
                " maintainer",
                " written by",
                " who ",
                " which project",
            ],
        )
    {
        return AnswerType::Person;
    }
    if first == "where"
        || has(
            &lower,
            &[
                " which file",
                " what file",
                " which directory",
                " what directory",
                " which folder",
                " what folder",
                " what path",
                " which path",
                " in which file",
                " what url",
                " which url",
                " what address",
                " which place",
                " what place",
                " which city",
                " which country",
            ],
        )
    {
        return AnswerType::Place;
    }
    if matches!(
        first,
        "is" | "are"
            | "can"
            | "could"
            | "does"
            | "do"
            | "did"
            | "will"
            | "would"
            | "should"
            | "must"
            | "may"
            | "has"
            | "have"
            | "was"
            | "were"
            | "am"
            | "shall"
    ) {
        return AnswerType::YesNo;
    }
    if has(
        &lower,
        &[
            " how do i",
            " how can i",
            " how do you",
            " how can you",
            " how to ",
            " how should i",
            " how does one",
            " what steps",
            " which steps",
            " what should i do",
            " what do i do",
            " what must i do",
            " what do i need to do",
            " what is the procedure",
            " how is it done",
        ],
    ) {
        return AnswerType::Procedure;
    }
    if has(
        &lower,
        &[
            " what are the",
            " which are the",
            " list ",
            " name the",
            " what kinds",
            " which kinds",
            " what types",
            " which types",
            " what formats",
            " which formats",
            " which modes",
            " what modes",
            " what values",
            " which values",
        ],
    ) || lower.starts_with(" list")
    {
        return AnswerType::List;
    }
    if has(
        &lower,
        &[
            " what is ",
            " what's ",
            " what are ",
            " what does ",
            " what do ",
            " meaning of",
            " define ",
            " what kind of",
        ],
    ) {
        return AnswerType::Definition;
    }
    AnswerType::Other
}

const NUMBER_WORDS: &[&str] = &[
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "sixty",
    "seventy",
    "eighty",
    "ninety",
    "hundred",
    "thousand",
    "million",
    "billion",
    "once",
    "twice",
    "half",
    "unlimited",
    "infinite",
    "infinity",
    "double",
    "dozen",
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "twelfth",
    "twentieth",
    "hundredth",
];

const SIZE_UNITS: &[&str] = &[
    "b",
    "byte",
    "bytes",
    "k",
    "kb",
    "kib",
    "kbyte",
    "kbytes",
    "kilobyte",
    "kilobytes",
    "m",
    "mb",
    "mib",
    "mbyte",
    "megabyte",
    "megabytes",
    "g",
    "gb",
    "gib",
    "gigabyte",
    "gigabytes",
    "t",
    "tb",
    "tib",
    "terabytes",
    "bit",
    "bits",
    "kbit",
    "kbps",
    "mbit",
    "blocks",
    "block",
    "sectors",
    "pages",
    "characters",
    "chars",
    "columns",
    "lines",
    "pixels",
    "px",
    "mm",
    "cm",
    "metre",
    "metres",
    "meter",
    "meters",
    "km",
    "kilometres",
    "kilometers",
    "inch",
    "inches",
    "in",
    "ft",
    "feet",
    "foot",
    "miles",
    "kg",
    "grams",
    "percent",
    "%",
    "entries",
    "files",
    "objects",
    "items",
];

const TIME_UNITS: &[&str] = &[
    "ms",
    "msec",
    "millisecond",
    "milliseconds",
    "us",
    "µs",
    "microseconds",
    "ns",
    "nanoseconds",
    "s",
    "sec",
    "secs",
    "second",
    "seconds",
    "m",
    "min",
    "mins",
    "minute",
    "minutes",
    "h",
    "hr",
    "hrs",
    "hour",
    "hours",
    "d",
    "day",
    "days",
    "week",
    "weeks",
    "month",
    "months",
    "year",
    "years",
    "fortnight",
    "jiffies",
    "ticks",
];

const FREQUENCY_WORDS: &[&str] = &[
    "daily", "weekly", "hourly", "monthly", "yearly", "annually", "nightly", "every", "once",
    "twice",
];

const MONTHS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "midnight",
    "noon",
];

/// Words that start with a capital for reasons other than being a name.
const NOT_NAMES: &[&str] = &[
    "the", "a", "an", "this", "that", "these", "those", "it", "if", "when", "see", "note", "use",
    "in", "on", "for", "by", "with", "and", "or", "but", "not", "no", "yes", "all", "each", "some",
    "any", "to", "of", "as", "at", "from", "is", "are", "be", "i", "you", "we", "they",
];

/// A word of the text: byte range with surrounding punctuation trimmed.
fn words(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                let word = &text[s..i];
                let lead = word.len()
                    - word
                        .trim_start_matches(['(', '[', '{', '"', '\'', '“', '‘', '<', '`', '*'])
                        .len();
                let trimmed = word.trim_end_matches([
                    ')', ']', '}', '"', '\'', '”', '’', ',', ';', ':', '.', '!', '?', '>', '`', '*',
                ]);
                let end = s + trimmed.len();
                if s + lead < end {
                    out.push((s + lead, end));
                }
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    out
}

fn is_number(word: &str) -> bool {
    let w = word.trim_start_matches(['+', '-', '~', '≈', '$', '€', '£']);
    let digits = w.chars().filter(char::is_ascii_digit).count();
    digits > 0
        && w.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | ',' | '_' | '%' | 'x'))
        && w.chars().next().is_some_and(|c| c.is_ascii_digit())
}

/// A number with a unit glued to it (`4KiB`, `512k`, `10s`, `0.6-metre`, `30%`): the unit.
fn glued_unit(word: &str) -> Option<String> {
    let digits = word
        .char_indices()
        .take_while(|(_, c)| c.is_ascii_digit() || *c == '.' || *c == ',')
        .last()
        .map(|(i, c)| i + c.len_utf8())?;
    if !word.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let unit = word[digits..].trim_start_matches('-').to_lowercase();
    (!unit.is_empty()).then_some(unit)
}

fn is_version(
    word: &str,
    previous: Option<&str>,
    next: Option<&str>,
    mentions_version: bool,
) -> bool {
    // A measure is no version (`96.8 kg`, `2.5 seconds`).
    if next.is_some_and(|n| {
        let n = n.to_lowercase();
        SIZE_UNITS.contains(&n.as_str()) || TIME_UNITS.contains(&n.as_str())
    }) {
        return false;
    }
    let w = word.trim_start_matches(['v', 'V']);
    let parts: Vec<&str> = w.split('.').collect();
    let numeric = parts.len() >= 2
        && parts[0].chars().all(|c| c.is_ascii_digit())
        && !parts[0].is_empty()
        && parts[1].starts_with(|c: char| c.is_ascii_digit());
    if !numeric {
        return false;
    }
    let named = previous.is_some_and(|p| {
        matches!(
            p.to_lowercase().as_str(),
            "version" | "versions" | "release" | "releases" | "since" | "v" | "until" | "before"
        )
    });
    // `GNU coreutils 9.1`, `shadow-utils 4.13`: a decimal after a name; any decimal in a
    // sentence that speaks of versions (`prior to 1.12`).
    let after_name = previous.is_some_and(|p| {
        p.chars().any(|c| c.is_ascii_alphabetic())
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && !NOT_NAMES.contains(&p.to_lowercase().as_str())
            && !["about", "than", "nearly", "approximately", "roughly"]
                .contains(&p.to_lowercase().as_str())
    });
    parts.len() >= 3
        || named
        || word.starts_with(['v', 'V'])
        || (parts.len() == 2 && (after_name || mentions_version))
}

fn is_year(word: &str) -> bool {
    word.len() == 4
        && word.chars().all(|c| c.is_ascii_digit())
        && (word.starts_with("19") || word.starts_with("20"))
}

fn is_date(word: &str) -> bool {
    let lower = word.to_lowercase();
    if MONTHS.contains(&lower.as_str()) || is_year(word) {
        return true;
    }
    // 2022-05-11, 11/05/2022, 21:30, 9am
    let bytes = word.as_bytes();
    let iso = bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && word.chars().filter(char::is_ascii_digit).count() == 8;
    let clock = word.split(':').count() == 2
        && word.split(':').all(|p| {
            let p = p.trim_end_matches(['a', 'p', 'm', '.']);
            !p.is_empty() && p.len() <= 2 && p.chars().all(|c| c.is_ascii_digit())
        });
    let meridian = (lower.ends_with("am") || lower.ends_with("pm"))
        && lower[..lower.len() - 2].chars().all(|c| c.is_ascii_digit())
        && lower.len() > 2;
    iso || clock || meridian
}

fn is_option(word: &str) -> bool {
    let flag = (word.starts_with('-') && word.len() >= 2)
        && word[1..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
        && !word.starts_with("---")
        && !is_number(word);
    // gc.auto, core.pager, net.ipv4.ip_forward
    let dotted = word.contains('.')
        && !word.contains('/')
        && word.split('.').count() >= 2
        && word
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        && word.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && word
            .split('.')
            .any(|p| p.chars().any(|c| c.is_ascii_alphabetic()))
        && !word.split('.').next_back().is_some_and(|p| {
            matches!(
                p,
                "conf" | "txt" | "log" | "json" | "toml" | "yaml" | "ini" | "cfg" | "so"
            )
        });
    // ControlPersist, ServerAliveInterval: capitals inside one word
    let camel = word.len() >= 4
        && word.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && word.chars().skip(1).any(|c| c.is_ascii_uppercase())
        && word.chars().any(|c| c.is_ascii_lowercase())
        && word.chars().all(|c| c.is_ascii_alphanumeric());
    // Settings as `key=VALUE` or `Key=` (bs=BYTES, NAutoVTs=, conv=excl)
    let assignment = word.find('=').is_some_and(|at| {
        at > 0
            && word[..at]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            && word[..at].chars().any(|c| c.is_ascii_alphabetic())
    });
    // Signals (SIGTERM, USR1, HUP as a signal name is not told from a word, so only these)
    let signal = (word.starts_with("SIG")
        && word.len() > 4
        && word
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
        || matches!(word, "USR1" | "USR2");
    // $HOME, TMPDIR, LC_ALL
    let variable = (word.starts_with('$') && word.len() > 1)
        || (word.len() >= 3
            && word.contains('_')
            && word
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit()));
    flag || dotted || camel || variable || assignment || signal
}

fn is_path(word: &str) -> bool {
    let rooted =
        (word.starts_with('/') && word.len() > 1 && word[1..].contains(char::is_alphanumeric))
            || word.starts_with("~/")
            || word.starts_with("./")
            || word.starts_with("$HOME/")
            || word.starts_with("%h/");
    let file = word.contains('.')
        && [
            ".conf", ".cfg", ".ini", ".toml", ".yaml", ".yml", ".json", ".txt", ".log", ".rc", ".d",
        ]
        .iter()
        .any(|ext| word.ends_with(ext));
    rooted
        || file
        || (word.starts_with('.')
            && word.len() > 2
            && word[1..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
}

/// A span fits well enough to carry an answer (a bare number where a size was asked does;
/// one capitalised word where a person was asked does not).
pub const GOOD_FIT: f64 = 0.5;

/// The typed spans of a sentence.
pub fn spans(text: &str) -> Vec<Span> {
    spans_in(text, true)
}

/// The typed spans of an entry's term (`HUSHLOGIN_FILE (string)`, `Compression`): not a
/// sentence, so its first word may be a name or key.
pub fn term_spans(term: &str) -> Vec<Span> {
    spans_in(term, false)
}

/// The typed spans of `text`; `sentence`: its first word starts a sentence (a capital there
/// makes no name on its own).
fn spans_in(text: &str, sentence: bool) -> Vec<Span> {
    let words = words(text);
    let mut out = Vec::new();
    let word = |i: usize| &text[words[i].0..words[i].1];
    let lower_text = text.to_lowercase();
    let mentions_version = lower_text.contains("version") || lower_text.contains("release");
    let mut i = 0;
    while i < words.len() {
        let (s, e) = words[i];
        let w = word(i);
        let lower = w.to_lowercase();
        let previous = i.checked_sub(1).map(word);
        let next = words.get(i + 1).map(|&(ns, ne)| &text[ns..ne]);
        let next_lower = next.map(str::to_lowercase);
        let push = |out: &mut Vec<Span>, kind, end| {
            out.push(Span {
                kind,
                start: s,
                end,
            })
        };
        if w.starts_with("http://") || w.starts_with("https://") || w.starts_with("www.") {
            push(&mut out, SpanKind::Url, e);
        } else if w.contains('@') && w.contains('.') && !w.starts_with('@') {
            push(&mut out, SpanKind::Email, e);
        } else if is_version(w, previous, next, mentions_version) {
            push(&mut out, SpanKind::Version, e);
            push(&mut out, SpanKind::Number, e);
        } else if is_date(w) {
            push(&mut out, SpanKind::Date, e);
            if is_year(w) {
                push(&mut out, SpanKind::Number, e);
            }
        } else if is_number(w) || NUMBER_WORDS.contains(&lower.as_str()) {
            let unit = next_lower.as_deref().map(|u| u.trim_end_matches('s'));
            let unit_full = next_lower.as_deref();
            let sized = unit_full.is_some_and(|u| SIZE_UNITS.contains(&u));
            let timed = unit_full.is_some_and(|u| TIME_UNITS.contains(&u))
                || unit.is_some_and(|u| TIME_UNITS.contains(&u));
            let end = if sized || timed { words[i + 1].1 } else { e };
            if w.ends_with('%') {
                push(&mut out, SpanKind::Size, e);
            }
            if sized {
                push(&mut out, SpanKind::Size, end);
            }
            if timed {
                push(&mut out, SpanKind::Duration, end);
            }
            if FREQUENCY_WORDS.contains(&lower.as_str()) {
                push(&mut out, SpanKind::Duration, e);
            }
            push(&mut out, SpanKind::Number, end);
            if sized || timed {
                i += 1;
            }
        } else if let Some(unit) = glued_unit(w) {
            let unit = unit.as_str();
            if SIZE_UNITS.contains(&unit) {
                push(&mut out, SpanKind::Size, e);
            }
            if TIME_UNITS.contains(&unit) {
                push(&mut out, SpanKind::Duration, e);
            }
            if unit.starts_with("st") || unit.starts_with("nd") || unit.starts_with("th") {
                push(&mut out, SpanKind::Date, e);
            }
            push(&mut out, SpanKind::Number, e);
        } else if FREQUENCY_WORDS.contains(&lower.as_str()) {
            push(&mut out, SpanKind::Duration, e);
        } else if is_option(w) {
            push(&mut out, SpanKind::Option, e);
        } else if is_path(w) {
            push(&mut out, SpanKind::Path, e);
        } else if w.chars().next().is_some_and(char::is_uppercase)
            && w.chars().any(char::is_lowercase)
            && !NOT_NAMES.contains(&lower.as_str())
        {
            // A run of capitalised words; the sentence's first word only with another after.
            let mut end_word = i;
            while end_word + 1 < words.len() {
                let n = word(end_word + 1);
                let capital = n.chars().next().is_some_and(char::is_uppercase)
                    && !NOT_NAMES.contains(&n.to_lowercase().as_str());
                let joined = text[words[end_word].1..words[end_word + 1].0]
                    .trim()
                    .is_empty();
                if capital && joined {
                    end_word += 1;
                } else {
                    break;
                }
            }
            if end_word > i {
                push(&mut out, SpanKind::FullName, words[end_word].1);
            } else if i > 0 || !sentence {
                push(&mut out, SpanKind::Name, words[end_word].1);
            }
            i = end_word;
        }
        i += 1;
    }
    out
}

/// Whether the question asks what happens or holds when nothing is set: "by default", "if I
/// don't say", "unless I change it", "if I leave the setting alone".
pub fn asks_default(question: &str) -> bool {
    let lower = question.to_lowercase();
    [
        "default",
        "if i don't",
        "if i do not",
        "if i don’t",
        "unless i",
        "without telling",
        "without setting",
        "without saying",
        "if nothing is set",
        "left alone",
        "leave the setting",
        "leave it alone",
        "out of the box",
        "if i leave",
        "if not set",
        "unless told",
        "normally",
        "usually",
    ]
    .iter()
    .any(|w| lower.contains(w))
}

/// Whether a sentence states a default (`The default is 512.`, `Defaults to 5s.`).
pub fn states_default(text: &str) -> bool {
    let lower = text.to_lowercase();
    lower.contains("default") || lower.contains("unless ") || lower.contains("if not ")
}

/// The best fit of any span of `spans` to `answer_type`, and where that span starts.
pub fn best_fit(answer_type: AnswerType, spans: &[Span]) -> Option<(f64, usize)> {
    spans
        .iter()
        .map(|s| (answer_type.fit(s.kind), s.start))
        .filter(|(fit, _)| *fit > 0.0)
        .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
}

/// A light English stem of a lower-case word, for matching a question's words in a sentence:
/// plural and verb endings removed (`takes` and `take`, `entries` and `entry`, `compressed`
/// and `compress`), then at most six letters.
pub fn stem(word: &str) -> String {
    let w = word.trim_end_matches("'s").trim_end_matches("’s");
    let n = w.chars().count();
    let cut = |suffix: &str, keep: usize| -> Option<String> {
        (w.ends_with(suffix) && n > suffix.len() + keep)
            .then(|| w[..w.len() - suffix.len()].to_string())
    };
    let base = cut("ies", 2)
        .map(|b| b + "y")
        .or_else(|| cut("sses", 1).map(|b| b + "ss"))
        .or_else(|| cut("ing", 2))
        .or_else(|| cut("ed", 2))
        .or_else(|| (!w.ends_with("ss")).then(|| cut("s", 2)).flatten())
        .unwrap_or_else(|| w.to_string());
    base.chars().take(6).collect()
}

/// Words of a question that say what it asks about, lower-case: without question words,
/// function words and the words that only say what kind of answer is wanted.
pub fn key_words(question: &str) -> Vec<String> {
    const SKIP: &[&str] = &[
        "a", "an", "the", "of", "to", "in", "on", "for", "by", "with", "at", "from", "and", "or",
        "is", "are", "was", "were", "be", "been", "does", "do", "did", "can", "could", "will",
        "would", "should", "must", "may", "might", "has", "have", "had", "what", "which", "who",
        "whom", "whose", "when", "where", "why", "how", "many", "much", "long", "often", "big",
        "large", "i", "me", "my", "you", "your", "it", "its", "this", "that", "there", "if", "not",
        "any", "some", "so", "than", "then", "into", "about", "get", "make", "use", "used",
        "using", "set", "default", "value", "number", "since", "version", "option", "flag",
        "setting", "one", "say", "tell", "give", "need", "want", "without", "their", "they",
        "them", "we", "our", "he", "she", "his", "her", "thing", "things", "way", "kind", "type",
        "as", "up", "out", "all", "just", "only", "don", "doesn", "isn", "won", "can't", "aren",
    ];
    question
        .split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .map(|w| w.trim_matches(['.', '-']).to_lowercase())
        .filter(|w| w.chars().count() >= 2 && !SKIP.contains(&w.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_are_classified_by_what_they_ask() {
        let cases = [
            (
                "How many loose objects trigger an automatic gc?",
                AnswerType::Quantity,
            ),
            (
                "How much does a ticket for a grown-up cost?",
                AnswerType::Quantity,
            ),
            (
                "How big is the buffer dd copies with if I don't say?",
                AnswerType::Size,
            ),
            ("What is the default block size?", AnswerType::Size),
            (
                "How long does ssh wait before giving up on a connection?",
                AnswerType::Duration,
            ),
            (
                "How often does the clock drive have to be rewound?",
                AnswerType::Duration,
            ),
            ("When was the bridge rebuilt?", AnswerType::Date),
            (
                "What year did the first release come out?",
                AnswerType::Date,
            ),
            (
                "Since which version does tar support zstd?",
                AnswerType::Version,
            ),
            (
                "In which systemd release was --grep added?",
                AnswerType::Version,
            ),
            ("Who wrote logger?", AnswerType::Person),
            ("Which company maintains the package?", AnswerType::Person),
            (
                "Where is the per-user configuration file?",
                AnswerType::Place,
            ),
            (
                "Which file holds the system-wide defaults?",
                AnswerType::Place,
            ),
            (
                "Which option makes rsync compress data?",
                AnswerType::Option,
            ),
            (
                "Which fstrim switch trims only the listed filesystems?",
                AnswerType::Option,
            ),
            (
                "If I don't use -f, which environment variable does tar read?",
                AnswerType::Option,
            ),
            (
                "What environment variable sets the temporary folder?",
                AnswerType::Option,
            ),
            (
                "Can I come to a public night when the moon is full?",
                AnswerType::YesNo,
            ),
            (
                "Does sort keep equal lines in their order?",
                AnswerType::YesNo,
            ),
            ("What does the --sparse option do?", AnswerType::Definition),
            (
                "How do I resume an interrupted download?",
                AnswerType::Procedure,
            ),
            (
                "What are the compression levels xz accepts?",
                AnswerType::List,
            ),
            ("Tell me about the observatory", AnswerType::Other),
            (
                "When I give dd a size like 4K, how many bytes is one K?",
                AnswerType::Size,
            ),
            (
                "A copy has been running for ages. Which signal makes it report?",
                AnswerType::Option,
            ),
            (
                "By default, how long must the system sit idle?",
                AnswerType::Duration,
            ),
        ];
        for (question, expected) in cases {
            assert_eq!(classify(question), expected, "{question}");
        }
        assert_eq!(
            classify("What is the smallest RSA key ssh accepts by default?"),
            AnswerType::Quantity
        );
        assert!(asks_default(
            "What is the smallest RSA key ssh accepts by default?"
        ));
        assert!(asks_default(
            "If I don't give logger a priority, which level is used?"
        ));
        assert!(!asks_default("Who wrote dd?"));
        assert!(states_default("Defaults to 5s."));
        assert_eq!(AnswerType::from_name("yes/no"), Some(AnswerType::YesNo));
        assert_eq!(
            AnswerType::from_name("Duration"),
            Some(AnswerType::Duration)
        );
    }

    fn kinds(text: &str) -> Vec<(SpanKind, &str)> {
        spans(text)
            .into_iter()
            .map(|s| (s.kind, &text[s.start..s.end]))
            .collect()
    }

    #[test]
    fn typed_spans_are_recognised() {
        let got = kinds("The default is 32768 bytes, or 4KiB per block.");
        assert!(got.contains(&(SpanKind::Size, "32768 bytes")), "{got:?}");
        assert!(got.contains(&(SpanKind::Size, "4KiB")), "{got:?}");
        assert!(got.contains(&(SpanKind::Number, "32768 bytes")), "{got:?}");
        let got = kinds("It times out after 10 seconds (or 5m) and retries daily.");
        assert!(got.contains(&(SpanKind::Duration, "10 seconds")), "{got:?}");
        assert!(got.contains(&(SpanKind::Duration, "5m")), "{got:?}");
        assert!(got.contains(&(SpanKind::Duration, "daily")), "{got:?}");
        let got = kinds("GNU coreutils 9.1 September 2022 DD(1)");
        assert!(got.contains(&(SpanKind::Version, "9.1")), "{got:?}");
        assert!(!kinds("It weighs 96.8 kg.")
            .iter()
            .any(|k| k.0 == SpanKind::Version));
        let got = kinds("util-linux 2.38.1 was released on 2022-05-11, in May, at 21:30.");
        assert!(got.contains(&(SpanKind::Version, "2.38.1")), "{got:?}");
        assert!(got.contains(&(SpanKind::Date, "2022-05-11")), "{got:?}");
        assert!(got.contains(&(SpanKind::Date, "May")), "{got:?}");
        assert!(got.contains(&(SpanKind::Date, "21:30")), "{got:?}");
        let got = kinds("Use -S or --size=N; see gc.auto, ControlPersist, bs=BYTES, NAutoVTs=, SIGTERM and $HOME.");
        for option in [
            "-S",
            "--size=N",
            "gc.auto",
            "ControlPersist",
            "bs=BYTES",
            "NAutoVTs=",
            "SIGTERM",
            "$HOME",
        ] {
            assert!(
                got.contains(&(SpanKind::Option, option)),
                "{option}: {got:?}"
            );
        }
        let got = kinds(
            "Read ~/.ssh/config and /etc/ssh/ssh_config, written by Karel Zak <kzak@redhat.com>.",
        );
        assert!(got.contains(&(SpanKind::Path, "~/.ssh/config")), "{got:?}");
        assert!(
            got.contains(&(SpanKind::Path, "/etc/ssh/ssh_config")),
            "{got:?}"
        );
        assert!(got.contains(&(SpanKind::FullName, "Karel Zak")), "{got:?}");
        assert!(kinds("It runs on Debian.").contains(&(SpanKind::Name, "Debian")));
        assert!(
            got.contains(&(SpanKind::Email, "kzak@redhat.com")),
            "{got:?}"
        );
        // A sentence's first word is no name on its own, and plain prose has no spans; a term
        // is no sentence.
        assert!(kinds("Specify the size of the buffer used for transfers.").is_empty());
        assert!(kinds("Compression").is_empty());
        assert_eq!(term_spans("Compression")[0].kind, SpanKind::Name);
    }

    #[test]
    fn fits_rank_spans_by_the_asked_type() {
        let s = spans("The default is 512 bytes.");
        assert_eq!(best_fit(AnswerType::Size, &s).map(|f| f.0), Some(1.0));
        assert_eq!(best_fit(AnswerType::Version, &s).map(|f| f.0), Some(0.4));
        assert_eq!(best_fit(AnswerType::Person, &s), None);
        assert!(best_fit(AnswerType::Size, &spans("Specify the size of the buffer.")).is_none());
        assert_eq!(stem("takes"), stem("take"));
        assert_eq!(stem("entries"), stem("entry"));
        assert_eq!(stem("compressed"), stem("compress"));
        assert_ne!(stem("bus"), stem("bu"));
        assert_eq!(
            key_words("How big is the buffer dd copies with if I don't say?"),
            vec!["buffer", "dd", "copies"]
        );
    }
}

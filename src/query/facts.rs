//! The checkable facts of a sentence: its numbers (in digits or in words, ordinals and clock
//! times included) and its proper names. A block supports a generated sentence only when it
//! holds every one of them; embedding similarity alone cannot tell 0.6 metres from 6.5.

use std::collections::HashSet;

/// Numbers and names a sentence states, normalised for comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Numbers as canonical strings: `1840` for "1,840", `0.6` for "0.60", `25` for
    /// "twenty-five", `1` for "first", `19:15` for a clock time.
    pub numbers: Vec<String>,
    /// Proper names (lower case), one word each: "Kestrel Ridge" gives `kestrel`, `ridge`.
    pub names: Vec<String>,
}

/// What a block contains, to look facts up in.
#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    numbers: HashSet<String>,
    words: HashSet<String>,
}

impl Vocabulary {
    /// Every number and word of `texts` (a block's text and its title > section line).
    pub fn of<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut vocabulary = Self::default();
        for text in texts {
            let tokens = tokens(text);
            vocabulary.numbers.extend(numbers(&tokens, true));
            for token in &tokens {
                if let Token::Word { text, .. } = token {
                    vocabulary.words.insert(text.to_lowercase());
                }
            }
        }
        vocabulary
    }

    /// The facts of `facts` this vocabulary lacks, as written for a person.
    pub fn missing(&self, facts: &Facts) -> Vec<String> {
        let numbers = facts
            .numbers
            .iter()
            .filter(|n| !self.numbers.contains(*n))
            .cloned();
        let names = facts
            .names
            .iter()
            .filter(|n| !self.words.contains(*n))
            .cloned();
        numbers.chain(names).collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// Digits, with decimal point, thousands separators or a clock colon.
    Number(String),
    /// Letters (apostrophes inside allowed, possessive `'s` removed); `first` marks the first
    /// word of a sentence or clause opening.
    Word { text: String, first: bool },
}

/// Words and numbers of `text`, in order. Hyphens split words ("Oyelowo-Banks", "24-inch").
fn tokens(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    // The next word opens a sentence (start of text, or after . ! ? or a line break).
    let mut opening = true;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || (matches!(chars[i], '.' | ',' | ':')
                        && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())
                        && i > start))
            {
                i += 1;
            }
            let raw: String = chars[start..i].iter().collect();
            // Ordinal suffixes (1st, 2nd, 23rd, 4th) belong to the number.
            let rest: String = chars[i..].iter().take(2).collect::<String>().to_lowercase();
            if ["st", "nd", "rd", "th"].contains(&rest.as_str())
                && !chars.get(i + 2).is_some_and(|c| c.is_alphanumeric())
            {
                i += 2;
            }
            out.push(Token::Number(canonical_number(&raw)));
            opening = false;
        } else if c.is_alphabetic() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphabetic()
                    || (matches!(chars[i], '\'' | '’')
                        && chars.get(i + 1).is_some_and(|d| d.is_alphabetic())))
            {
                i += 1;
            }
            let mut word: String = chars[start..i].iter().collect();
            for suffix in ["'s", "’s", "'S", "’S"] {
                if let Some(stem) = word.strip_suffix(suffix) {
                    word = stem.to_string();
                }
            }
            out.push(Token::Word {
                text: word,
                first: opening,
            });
            opening = false;
        } else {
            if matches!(c, '.' | '!' | '?' | '\n' | ':' | ';' | '•') {
                opening = true;
            }
            i += 1;
        }
    }
    out
}

/// `1,840` -> `1840`, `0.60` -> `0.6`, `12.0` -> `12`, `08:05` -> `8:05`, `007` -> `7`.
fn canonical_number(raw: &str) -> String {
    if raw.contains(':') {
        let mut parts = raw.split(':');
        let hours = parts.next().unwrap_or_default().trim_start_matches('0');
        let rest: Vec<&str> = parts.collect();
        return format!(
            "{}:{}",
            if hours.is_empty() { "0" } else { hours },
            rest.join(":")
        );
    }
    // Commas group thousands when every group after the first has three digits; otherwise
    // they are a decimal comma.
    let groups: Vec<&str> = raw.split(',').collect();
    let mut number = if groups.len() > 1 && groups[1..].iter().all(|g| g.len() == 3) {
        groups.concat()
    } else {
        raw.replace(',', ".")
    };
    if number.matches('.').count() > 1 {
        // 1.840.000 style thousands.
        number = number.replace('.', "");
    }
    if let Some((whole, fraction)) = number.split_once('.') {
        let fraction = fraction.trim_end_matches('0');
        let whole = whole.trim_start_matches('0');
        let whole = if whole.is_empty() { "0" } else { whole };
        return if fraction.is_empty() {
            whole.to_string()
        } else {
            format!("{whole}.{fraction}")
        };
    }
    let trimmed = number.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.to_string()
    }
}

fn unit_word(word: &str) -> Option<u64> {
    Some(match word {
        "zero" => 0,
        "one" | "first" => 1,
        "two" | "second" => 2,
        "three" | "third" => 3,
        "four" | "fourth" => 4,
        "five" | "fifth" => 5,
        "six" | "sixth" => 6,
        "seven" | "seventh" => 7,
        "eight" | "eighth" => 8,
        "nine" | "ninth" => 9,
        "ten" | "tenth" => 10,
        "eleven" | "eleventh" => 11,
        "twelve" | "twelfth" | "dozen" => 12,
        "thirteen" | "thirteenth" => 13,
        "fourteen" | "fourteenth" => 14,
        "fifteen" | "fifteenth" => 15,
        "sixteen" | "sixteenth" => 16,
        "seventeen" | "seventeenth" => 17,
        "eighteen" | "eighteenth" => 18,
        "nineteen" | "nineteenth" => 19,
        _ => return None,
    })
}

fn tens_word(word: &str) -> Option<u64> {
    Some(match word {
        "twenty" | "twentieth" => 20,
        "thirty" | "thirtieth" => 30,
        "forty" | "fortieth" => 40,
        "fifty" | "fiftieth" => 50,
        "sixty" | "sixtieth" => 60,
        "seventy" | "seventieth" => 70,
        "eighty" | "eightieth" => 80,
        "ninety" | "ninetieth" => 90,
        _ => return None,
    })
}

fn scale_word(word: &str) -> Option<u64> {
    Some(match word {
        "hundred" | "hundredth" => 100,
        "thousand" | "thousandth" => 1_000,
        "million" | "millionth" => 1_000_000,
        _ => return None,
    })
}

/// Words that are numbers only some of the time ("one of them", "first, the car park"):
/// they count as numbers a block holds, never as numbers a sentence must prove.
fn ambiguous_number_word(word: &str) -> bool {
    matches!(word, "one" | "first" | "second")
}

/// A number being read from words ("two hundred and five").
#[derive(Default)]
struct WordNumber {
    total: u64,
    current: u64,
    words: usize,
    /// Every word so far is one of [`ambiguous_number_word`].
    ambiguous: bool,
}

impl WordNumber {
    /// Whether `value` (a unit or tens word) continues this number rather than starting one.
    fn continues_with(&self, value: u64) -> bool {
        let after_tens = self.current % 100 >= 20 && self.current.is_multiple_of(10) && value < 10;
        let after_hundred = self.current >= 100 && self.current.is_multiple_of(100);
        let after_thousand = self.current == 0 && self.total > 0;
        self.words > 0 && (after_tens || after_hundred || after_thousand)
    }

    fn take(&mut self, all: bool) -> Option<String> {
        let done = std::mem::take(self);
        (done.words > 0 && (all || !done.ambiguous))
            .then(|| (done.total + done.current).to_string())
    }
}

/// The numbers of `tokens`: digit tokens, and runs of number words read as one number
/// ("twenty five" = 25, "two hundred" = 200). With `all`, ambiguous words count too.
fn numbers(tokens: &[Token], all: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut run = WordNumber::default();
    for token in tokens {
        let word = match token {
            Token::Number(n) => {
                out.extend(run.take(all));
                out.push(n.clone());
                continue;
            }
            Token::Word { text, .. } => text.to_lowercase(),
        };
        if let Some(value) = unit_word(&word).or_else(|| tens_word(&word)) {
            if !run.continues_with(value) {
                out.extend(run.take(all));
                run.ambiguous = true;
            }
            run.current += value;
            run.words += 1;
            run.ambiguous &= ambiguous_number_word(&word);
        } else if let Some(scale) = scale_word(&word) {
            if run.words == 0 {
                run.ambiguous = false;
            }
            let base = run.current.max(1);
            if scale >= 1_000 {
                run.total += base * scale;
                run.current = 0;
            } else {
                run.current = base * scale;
            }
            run.words += 1;
            run.ambiguous = false;
        } else if !(word == "and" && run.words > 0) {
            out.extend(run.take(all));
        }
    }
    out.extend(run.take(all));
    out
}

/// Capitalised words that are not names even inside a sentence.
const NOT_NAMES: &[&str] = &[
    "i", "i'm", "i've", "i'd", "i'll", "ok", "am", "pm", "a", "an", "the",
];

/// The numbers and proper names of one sentence. A capitalised word counts as a name unless
/// it opens the sentence (where every word is capitalised); a word in capitals of two letters
/// or more (an acronym) counts wherever it is.
pub fn facts(sentence: &str) -> Facts {
    let tokens = tokens(sentence);
    let numbers = numbers(&tokens, false);
    let mut names = Vec::new();
    for token in &tokens {
        let Token::Word { text, first } = token else {
            continue;
        };
        let lower = text.to_lowercase();
        if NOT_NAMES.contains(&lower.as_str())
            || unit_word(&lower).is_some()
            || tens_word(&lower).is_some()
            || scale_word(&lower).is_some()
        {
            continue;
        }
        let mut chars = text.chars();
        let capital = chars.next().is_some_and(char::is_uppercase);
        let acronym = text.chars().count() >= 2 && text.chars().all(char::is_uppercase);
        if ((capital && !first) || acronym) && !names.contains(&lower) {
            names.push(lower);
        }
    }
    Facts { numbers, names }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_digits_and_words() {
        let f = facts("The dome is 6.5 metres wide, has 1,840 bolts and twenty-five windows.");
        assert_eq!(f.numbers, vec!["6.5", "1840", "25"]);
        let f =
            facts("Doors open at 20:00, or 08:30 in winter, on the 3rd and two hundred and five.");
        assert_eq!(f.numbers, vec!["20:00", "8:30", "3", "205"]);
        assert_eq!(
            facts("It is a 0.60-metre (24-inch) reflector.").numbers,
            vec!["0.6", "24"]
        );
        assert_eq!(
            facts("Seven nights, then five six.").numbers,
            vec!["7", "5", "6"]
        );
        // "one" and "first" alone are too often not quantities to demand them.
        assert!(facts("First, one of the domes opens.").numbers.is_empty());
        assert_eq!(
            numbers(&tokens("from the first of October"), true),
            vec!["1"]
        );
    }

    #[test]
    fn names_are_capitalised_words_inside_the_sentence() {
        let f = facts("Visitors meet Marguerite Oyelowo-Banks at the NASA desk in Alder Springs.");
        assert_eq!(
            f.names,
            vec!["marguerite", "oyelowo", "banks", "nasa", "alder", "springs"]
        );
        // The opening word of each sentence is not a name by its capital alone.
        let f = facts("The car park closes. Visitors park in the field.");
        assert!(f.names.is_empty(), "{f:?}");
        assert_eq!(facts("Harriet's mirror.").names, Vec::<String>::new());
        assert_eq!(facts("It is the Harriet's mirror.").names, vec!["harriet"]);
    }

    #[test]
    fn a_block_vocabulary_finds_what_is_missing() {
        let block = Vocabulary::of([
            "Our main telescope is a 0.6-metre (24-inch) reflector, installed in 2011 and named after Harriet Lowenthal.",
            "Telescopes and Instruments > The Harriet (main dome)",
        ]);
        assert!(block
            .missing(&facts(
                "The main telescope is the 24-inch Harriet, from 2011."
            ))
            .is_empty());
        assert_eq!(
            block.missing(&facts(
                "The main telescope is a 6.5-metre reflector built in 1992."
            )),
            vec!["6.5", "1992"]
        );
        assert_eq!(
            block.missing(&facts("It was named after Harriet Tubman.")),
            vec!["tubman"]
        );
        // Number words in the block count for digits in the answer and the other way round.
        let words = Vocabulary::of(["closed from the first of October until the end of November"]);
        assert!(words
            .missing(&facts("It is closed from 1 October."))
            .is_empty());
        let digits = Vocabulary::of(["It has 12 seats and 27 steps."]);
        assert!(digits
            .missing(&facts("It has twelve seats and twenty-seven steps."))
            .is_empty());
    }
}

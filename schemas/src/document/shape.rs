//! A check of a source's size and nesting that runs before it is parsed.
//!
//! The YAML parser takes time quadratic in the depth of nested flow collections (`[[[[...`):
//! a 200 KB file of brackets held a core for over half a minute before its own recursion
//! limit refused it. This scan is linear: it follows YAML's lexical rules far enough to count
//! flow depth (quoted scalars, comments, block scalars), and refuses a source deeper than
//! [`MAX_DEPTH`] or larger than [`MAX_SOURCE_BYTES`] in milliseconds.

use super::SpecError;

/// The deepest nesting of `[...]` and `{...}` a source may have. Documents Baton reads need
/// a few levels; Helm values rarely a dozen.
pub const MAX_DEPTH: usize = 64;

/// The largest source Baton reads: 64 MiB (a 200 000-node workflow is about 12 MB).
pub const MAX_SOURCE_BYTES: usize = 64 << 20;

/// Returns an error when `text` is larger than [`MAX_SOURCE_BYTES`] or nests flow collections
/// deeper than [`MAX_DEPTH`], naming the line where the limit was crossed.
pub fn check(text: &str) -> Result<(), SpecError> {
    if text.len() > MAX_SOURCE_BYTES {
        return Err(SpecError::new(
            "",
            format!(
                "the source is {} bytes, above the limit of {MAX_SOURCE_BYTES}",
                text.len()
            ),
        ));
    }
    let mut scan = Scan::default();
    for (number, line) in text.lines().enumerate() {
        if scan.line(line) > MAX_DEPTH {
            return Err(SpecError::new(
                "",
                format!(
                    "line {}: nested deeper than {MAX_DEPTH} levels of [ ] or {{ }}; Baton refuses such a source before parsing it",
                    number + 1
                ),
            ));
        }
    }
    Ok(())
}

/// Where the scan is between lines.
#[derive(Default)]
struct Scan {
    /// Open flow collections.
    depth: usize,
    /// Inside a quoted scalar that goes on to the next line.
    quote: Option<char>,
    /// Inside a block scalar (`|` or `>`) whose lines are indented more than this.
    block_above: Option<usize>,
}

impl Scan {
    /// Scans one line and returns the deepest flow depth reached on it.
    fn line(&mut self, line: &str) -> usize {
        let indent = line.len() - line.trim_start_matches(' ').len();
        if let Some(parent) = self.block_above {
            if line.trim().is_empty() || indent > parent {
                return self.depth;
            }
            self.block_above = None;
        }
        let mut deepest = self.depth;
        // What came before, for deciding whether a quote or `#` starts something.
        let mut previous = ' ';
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if let Some(q) = self.quote {
                match c {
                    '\\' if q == '"' => {
                        chars.next();
                    }
                    // `''` is a quote inside a single-quoted scalar.
                    '\'' if q == '\'' && chars.peek() == Some(&'\'') => {
                        chars.next();
                    }
                    _ if c == q => self.quote = None,
                    _ => {}
                }
                previous = c;
                continue;
            }
            let at_scalar_start =
                matches!(previous, ' ' | '\t' | '[' | '{' | ',' | ':' | '-' | '?');
            match c {
                '#' if matches!(previous, ' ' | '\t') => break,
                '\'' | '"' if at_scalar_start => self.quote = Some(c),
                '[' | '{' => {
                    self.depth += 1;
                    deepest = deepest.max(self.depth);
                }
                ']' | '}' => self.depth = self.depth.saturating_sub(1),
                '|' | '>' if self.depth == 0 && at_scalar_start => {
                    let rest = chars.clone().collect::<String>();
                    let rest = rest.split(" #").next().unwrap_or_default().trim();
                    if rest.chars().all(|c| matches!(c, '+' | '-' | '0'..='9')) {
                        self.block_above = Some(indent);
                        return deepest;
                    }
                }
                _ => {}
            }
            previous = c;
        }
        deepest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_brackets_are_refused_at_their_line() {
        let text = format!("a: 1\nb: {}{}\n", "[".repeat(100), "]".repeat(100));
        let e = check(&text).unwrap_err();
        assert!(
            e.message.starts_with("line 2: nested deeper than 64"),
            "{e}"
        );
        let json = format!("{}1{}", "{\"a\":".repeat(70), "}".repeat(70));
        assert!(check(&json).is_err());
    }

    #[test]
    fn brackets_in_strings_comments_and_block_scalars_do_not_count() {
        let many = "[".repeat(100);
        let text = format!(
            "a: \"{many}\"\nb: '{many}'\nc: x # {many}\nd: |\n  {many}\n  \"\ne: [[1], {{k: [2]}}]\nf: it's\ng: [{many}\n"
        );
        // Only the last line nests for real.
        let e = check(&text).unwrap_err();
        assert!(e.message.starts_with("line 9:"), "{e}");
        let text = format!(
            "a: \"{many}\\\"{many}\"\ncommand: [sh, -c, 'echo [[ ]]']\nb: 'it''s {many}'\n"
        );
        check(&text).unwrap();
    }

    #[test]
    fn a_quote_inside_a_plain_scalar_hides_nothing() {
        // `it's` opens no quote: YAML reads it as plain text, so the brackets after it nest.
        let text = format!("a: [it's, {}\n", "[".repeat(100));
        assert!(check(&text).is_err());
    }

    #[test]
    fn large_sources_are_refused() {
        let text = "#".repeat(MAX_SOURCE_BYTES + 1);
        let e = check(&text).unwrap_err();
        assert!(e.message.contains("above the limit"), "{e}");
    }
}

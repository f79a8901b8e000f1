//! The renderings of a drill report — Markdown, an SVG timeline, an HTML page, JUnit XML —
//! and what they share: numbers written the same way everywhere, and escaping. Every text a
//! report holds may come from the world (a service's name, an error message), so every text
//! is escaped for the format it goes into, without exception.

mod html;
mod junit;
mod markdown;
mod svg;

pub use html::html;
pub use junit::junit;
pub use markdown::markdown;
pub use svg::timeline_svg;

/// A number of seconds (or any measure) as people read it: at most two decimals, no trailing
/// zeros (`14.2`, `10`, `0.35`).
pub(crate) fn num(x: f64) -> String {
    if !x.is_finite() {
        return "unknown".to_string();
    }
    let text = format!("{x:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

/// Whether XML 1.0 allows the character at all, even escaped; HTML calls the C1 controls
/// parse errors. Anything else becomes U+FFFD.
fn allowed(c: char) -> bool {
    !matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{fffe}' | '\u{ffff}')
}

/// Text escaped for XML and HTML alike, in content and in quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if !allowed(c) => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// [`escape`] for an XML attribute whose line breaks and tabs must survive: a parser turns a
/// literal one into a space.
pub(crate) fn escape_attr(s: &str) -> String {
    escape(s)
        .replace('\n', "&#10;")
        .replace('\r', "&#13;")
        .replace('\t', "&#9;")
}

/// Text escaped for Markdown (CommonMark with GitHub's tables): every character that could
/// start markup, raw HTML, an entity or a table cell is backslash-escaped, line breaks become
/// spaces, so the text reads as itself in a paragraph, a list item or a table cell.
pub fn md(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        let word = |j: Option<usize>| j.and_then(|j| chars.get(j)).is_some_and(|c| c.is_alphanumeric());
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            '\\' | '`' | '*' | '[' | ']' | '<' | '>' | '|' | '&' | '~' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            // An underscore inside a word (`route_switched`) is no emphasis.
            '_' if word(i.checked_sub(1)) && word(Some(i + 1)) => out.push('_'),
            '_' => out.push_str("\\_"),
            // At the start, these would make a list or a heading underline.
            '-' | '+' | '=' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            // `1.` or `1)` at the start would make an ordered list.
            '.' | ')'
                if i > 0
                    && chars[..i].iter().all(char::is_ascii_digit)
                    && chars.get(i + 1).is_none_or(|c| c.is_whitespace()) =>
            {
                out.push('\\');
                out.push(c);
            }
            c if !allowed(c) => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A seconds value that may be unknown, for a table cell.
pub(crate) fn maybe(x: Option<f64>, unknown: &str) -> String {
    x.map_or(unknown.to_string(), num)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(num(14.2), "14.2");
        assert_eq!(num(10.0), "10");
        assert_eq!(num(0.35), "0.35");
        assert_eq!(num(0.001), "0");
        assert_eq!(num(-0.001), "0");
        assert_eq!(num(f64::NAN), "unknown");
    }

    #[test]
    fn escaping_leaves_no_markup_and_no_forbidden_character() {
        assert_eq!(escape("<script>&\"'\u{1}"), "&lt;script&gt;&amp;&quot;&#39;\u{fffd}");
        assert_eq!(escape_attr("a\nb"), "a&#10;b");
        assert_eq!(md("<script>&\"'|*_x_`"), "\\<script\\>\\&\"'\\|\\*\\_x\\_\\`");
        assert_eq!(md("route_switched"), "route_switched");
        assert_eq!(md("- a\nb"), "\\- a b");
        assert_eq!(md("12. x"), "12\\. x");
        assert_eq!(md("0.1.0"), "0.1.0");
    }
}

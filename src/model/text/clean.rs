//! Text clean-up before CLIP's BPE, in the two flavours CLIP files imply.
//!
//! OpenAI's tokenizer (`simple_tokenizer.py`, also OpenCLIP's) runs
//! `ftfy.fix_text`, `html.unescape` twice, collapses whitespace, strips and
//! lower-cases. ftfy's deterministic fixes are reproduced here: HTML entities
//! (only while no `<` has been seen, as its `unescape_html="auto"`), Latin
//! ligatures, full-width forms, curly quotes, control characters, NFC. Its
//! mojibake repair (guessing a wrong decoding) is not: that text is
//! tokenised as it is.
//!
//! A Hugging Face `tokenizer.json` normalises instead (NFC, `\s+` -> one
//! space, per-character lower case): that is what its files are made for.

use unicode_normalization::UnicodeNormalization;

/// Which clean-up a vocabulary's tokenizer applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanMode {
    /// OpenAI / OpenCLIP `simple_tokenizer.py`.
    OpenAi,
    /// The normalizer of a Hugging Face CLIP `tokenizer.json`.
    HuggingFace,
}

pub fn clean(text: &str, mode: CleanMode) -> String {
    match mode {
        CleanMode::OpenAi => {
            let fixed = fix_text(text);
            let unescaped = unescape_html(&unescape_html(&fixed));
            collapse_whitespace(unescaped.trim()).to_lowercase()
        }
        CleanMode::HuggingFace => {
            let nfc: String = text.nfc().collect();
            // Per character, as the tokenizers crate lower-cases (no final sigma).
            collapse_whitespace_keep_ends(&nfc).chars().flat_map(char::to_lowercase).collect()
        }
    }
}

/// `" ".join(text.split())`.
fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `re.sub(r"\s+", " ", text)`: runs become one space, ends included.
fn collapse_whitespace_keep_ends(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    out
}

/// ftfy's `fix_text` with its default settings, less the encoding repair:
/// per line, each fix in ftfy's order, until nothing changes.
fn fix_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut unescape = true;
    for segment in text.split_inclusive('\n') {
        if segment.contains('<') {
            // ftfy turns HTML unescaping off for this and every later line.
            unescape = false;
        }
        let mut current = segment.to_string();
        for _ in 0..16 {
            let mut next = if unescape { unescape_html_strict(&current) } else { current.clone() };
            next = next.chars().flat_map(fix_char).collect();
            next = next.nfc().collect();
            if next == current {
                break;
            }
            current = next;
        }
        out.push_str(&current);
    }
    out
}

/// Ligatures, width, quotes, line breaks and control characters, one
/// character at a time (each of ftfy's fixes is a character table).
fn fix_char(c: char) -> Vec<char> {
    let ligature = match c {
        'Ĳ' => Some("IJ"),
        'ĳ' => Some("ij"),
        'ŉ' => Some("ʼn"),
        'Ǳ' => Some("DZ"),
        'ǲ' => Some("Dz"),
        'ǳ' => Some("dz"),
        'Ǆ' => Some("DŽ"),
        'ǅ' => Some("Dž"),
        'ǆ' => Some("dž"),
        'Ǉ' => Some("LJ"),
        'ǈ' => Some("Lj"),
        'ǉ' => Some("lj"),
        'Ǌ' => Some("NJ"),
        'ǋ' => Some("Nj"),
        'ǌ' => Some("nj"),
        'ﬀ' => Some("ff"),
        'ﬁ' => Some("fi"),
        'ﬂ' => Some("fl"),
        'ﬃ' => Some("ffi"),
        'ﬄ' => Some("ffl"),
        'ﬅ' => Some("ſt"),
        'ﬆ' => Some("st"),
        _ => None,
    };
    if let Some(s) = ligature {
        return s.chars().collect();
    }
    let code = c as u32;
    // Full-width and half-width forms to their NFKC equivalents; the
    // ideographic space to a space.
    if code == 0x3000 {
        return vec![' '];
    }
    if (0xFF01..0xFFF0).contains(&code) {
        let alternate: String = c.to_string().nfkc().collect();
        return alternate.chars().collect();
    }
    match code {
        0x02BC | 0x2018..=0x201B => return vec!['\''],
        0x201C..=0x201F => return vec!['"'],
        0x2028 | 0x2029 | 0x85 => return vec!['\n'],
        0x00..=0x08 | 0x0B | 0x0E..=0x1F | 0x7F | 0x206A..=0x206F | 0xFEFF | 0xFFF9..=0xFFFC => return Vec::new(),
        _ => {}
    }
    if c == '\r' {
        return vec!['\n'];
    }
    vec![c]
}

/// ftfy's own unescaping: only entities with their semicolon.
fn unescape_html_strict(text: &str) -> String {
    unescape(text, true)
}

/// Python's `html.unescape`: numeric references (semicolon optional) and
/// named entities (see [`named_entity`]).
pub fn unescape_html(text: &str) -> String {
    unescape(text, false)
}

fn unescape(text: &str, need_semicolon: bool) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 1..];
        match decode_reference(tail, need_semicolon) {
            Some((decoded, used)) => {
                out.push_str(&decoded);
                rest = &tail[used..];
            }
            None => {
                out.push('&');
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The reference after an `&`: its text and how many bytes it used.
fn decode_reference(tail: &str, need_semicolon: bool) -> Option<(String, usize)> {
    if let Some(num) = tail.strip_prefix('#') {
        let (digits, radix, skip) = match num.strip_prefix(['x', 'X']) {
            Some(hex) => (hex.chars().take_while(char::is_ascii_hexdigit).collect::<String>(), 16, 2),
            None => (num.chars().take_while(char::is_ascii_digit).collect::<String>(), 10, 1),
        };
        if digits.is_empty() {
            return None;
        }
        let mut used = skip + digits.len();
        let has_semicolon = tail[used..].starts_with(';');
        if has_semicolon {
            used += 1;
        } else if need_semicolon {
            return None;
        }
        let code = u32::from_str_radix(&digits, radix).unwrap_or(u32::MAX);
        return Some((numeric_char(code).to_string(), used));
    }
    let name: String = tail.chars().take_while(char::is_ascii_alphanumeric).collect();
    if name.is_empty() || !tail[name.len()..].starts_with(';') {
        return None;
    }
    named_entity(&name).map(|s| (s.to_string(), name.len() + 1))
}

/// Python's rules for a numeric reference: invalid code points become U+FFFD,
/// the C1 range is read as Windows-1252.
fn numeric_char(code: u32) -> char {
    const CP1252: [u32; 32] = [
        0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8D,
        0x017D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A,
        0x0153, 0x9D, 0x017E, 0x0178,
    ];
    match code {
        0x80..=0x9F => char::from_u32(CP1252[(code - 0x80) as usize]).unwrap_or('\u{FFFD}'),
        0 | 0xD800..=0xDFFF | 0x110000.. => '\u{FFFD}',
        _ => char::from_u32(code).unwrap_or('\u{FFFD}'),
    }
}

/// The named entities text commonly carries (HTML5 defines some 2,000; a
/// name not listed here stays as written).
fn named_entity(name: &str) -> Option<&'static str> {
    Some(match name {
        "amp" | "AMP" => "&",
        "lt" | "LT" => "<",
        "gt" | "GT" => ">",
        "quot" | "QUOT" => "\"",
        "apos" => "'",
        "nbsp" => "\u{a0}",
        "copy" | "COPY" => "©",
        "reg" | "REG" => "®",
        "trade" => "™",
        "deg" => "°",
        "hellip" => "…",
        "mdash" => "—",
        "ndash" => "–",
        "lsquo" => "‘",
        "rsquo" => "’",
        "ldquo" => "“",
        "rdquo" => "”",
        "laquo" => "«",
        "raquo" => "»",
        "bull" => "•",
        "middot" => "·",
        "euro" => "€",
        "pound" => "£",
        "yen" => "¥",
        "cent" => "¢",
        "sect" => "§",
        "para" => "¶",
        "times" => "×",
        "divide" => "÷",
        "plusmn" => "±",
        "micro" => "µ",
        "frac12" => "½",
        "frac14" => "¼",
        "frac34" => "¾",
        "iexcl" => "¡",
        "iquest" => "¿",
        "szlig" => "ß",
        "auml" => "ä",
        "ouml" => "ö",
        "uuml" => "ü",
        "Auml" => "Ä",
        "Ouml" => "Ö",
        "Uuml" => "Ü",
        "eacute" => "é",
        "egrave" => "è",
        "ecirc" => "ê",
        "aacute" => "á",
        "agrave" => "à",
        "acirc" => "â",
        "iacute" => "í",
        "oacute" => "ó",
        "uacute" => "ú",
        "ntilde" => "ñ",
        "ccedil" => "ç",
        "Eacute" => "É",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_clean_up() {
        let c = |s| clean(s, CleanMode::OpenAi);
        assert_eq!(c("  Multiple   spaces,\ttabs\nand  "), "multiple spaces, tabs and");
        assert_eq!(c("fullwidth ＡＢＣ１２３"), "fullwidth abc123");
        assert_eq!(c("“curly” ‘single’"), "\"curly\" 'single'");
        assert_eq!(c("ﬁne ﬂoor"), "fine floor");
        assert_eq!(c("Tom &amp; Jerry&#39;s &lt;tag&gt;"), "tom & jerry's <tag>");
        assert_eq!(c("e\u{301}"), "é");
        assert_eq!(c("ΣΊΣΥΦΟΣ"), "σίσυφος");
        assert_eq!(c("a\u{0}b\u{feff}c"), "abc");
    }

    #[test]
    fn html_rules_follow_python() {
        assert_eq!(unescape_html("&amp;amp;"), "&amp;");
        assert_eq!(unescape_html("&#233;&#xE9;&#233 &#150;"), "ééé –");
        assert_eq!(unescape_html("&unknownentity; & alone"), "&unknownentity; & alone");
        // ftfy leaves text with a '<' to html.unescape alone.
        assert_eq!(fix_text("<b>&amp;</b>"), "<b>&amp;</b>");
    }

    #[test]
    fn hugging_face_normaliser() {
        assert_eq!(clean(" A\t\tB ", CleanMode::HuggingFace), " a b ");
        assert_eq!(clean("ΣΑΣ", CleanMode::HuggingFace), "σασ");
        assert_eq!(clean("&amp;", CleanMode::HuggingFace), "&amp;");
    }
}

//! MIL text → tokens, each with the line and column where it starts.

use super::TextError;

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// An identifier or keyword (`tensor`, `fp16`, `func`, a value name, `true`).
    Ident(String),
    /// A number as written (`64`, `-0x1.4p+3`, `1e-5`, `-inf`).
    Number(String),
    /// A string literal, unescaped.
    Str(String),
    /// `->`.
    Arrow,
    /// One of `( ) [ ] { } < > , = ; :`.
    Punct(char),
}

impl Tok {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Number(s) => format!("number `{s}`"),
            Tok::Str(s) => format!("string {}", super::literal::quote(s)),
            Tok::Arrow => "`->`".into(),
            Tok::Punct(c) => format!("`{c}`"),
        }
    }
}

/// A token and where it starts (1-based line and column, in characters).
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// The token.
    pub tok: Tok,
    /// Line.
    pub line: u32,
    /// Column.
    pub column: u32,
}

/// Splits MIL text into tokens; `//` starts a comment that runs to the end of the line.
pub fn tokenize(text: &str) -> Result<Vec<Token>, TextError> {
    let mut lexer = Lexer {
        bytes: text.as_bytes(),
        pos: 0,
        line: 1,
        column: 1,
    };
    let mut out = Vec::new();
    while let Some(t) = lexer.next_token()? {
        out.push(t);
    }
    Ok(out)
}

struct Lexer<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: u32,
    column: u32,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '@'
}

impl Lexer<'_> {
    /// The byte `ahead` bytes on, as a char (non-ASCII bytes read as U+FFFD, which no token
    /// but a string accepts).
    fn peek(&self, ahead: usize) -> Option<char> {
        self.bytes.get(self.pos + ahead).map(|&b| {
            if b.is_ascii() {
                b as char
            } else {
                char::REPLACEMENT_CHARACTER
            }
        })
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        let b = self.bytes[self.pos];
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else if b & 0xc0 != 0x80 {
            // A new character (not a UTF-8 continuation byte).
            self.column += 1;
        }
        Some(c)
    }

    fn error(&self, line: u32, column: u32, reason: impl Into<String>) -> TextError {
        TextError {
            line,
            column,
            reason: reason.into(),
        }
    }

    fn skip_space(&mut self) {
        while let Some(c) = self.peek(0) {
            if c.is_whitespace() {
                self.bump();
            } else if c == '/' && self.peek(1) == Some('/') {
                while self.peek(0).is_some_and(|c| c != '\n') {
                    self.bump();
                }
            } else {
                break;
            }
        }
    }

    fn next_token(&mut self) -> Result<Option<Token>, TextError> {
        self.skip_space();
        let (line, column) = (self.line, self.column);
        let Some(c) = self.peek(0) else {
            return Ok(None);
        };
        let tok = if is_ident_start(c) {
            let mut s = String::new();
            while let Some(c) = self.peek(0).filter(|&c| is_ident_char(c)) {
                s.push(c);
                self.bump();
            }
            Tok::Ident(s)
        } else if c.is_ascii_digit()
            || ((c == '-' || c == '+' || c == '.')
                && self
                    .peek(1)
                    .is_some_and(|n| n.is_ascii_alphanumeric() || n == '.'))
        {
            self.number()
        } else if c == '"' {
            self.string(line, column)?
        } else if c == '-' && self.peek(1) == Some('>') {
            self.bump();
            self.bump();
            Tok::Arrow
        } else if "()[]{}<>,=;:".contains(c) {
            self.bump();
            Tok::Punct(c)
        } else {
            return Err(self.error(line, column, format!("unexpected character {c:?}")));
        };
        Ok(Some(Token { tok, line, column }))
    }

    fn number(&mut self) -> Tok {
        let mut s = String::new();
        if let Some(c) = self.peek(0).filter(|&c| c == '-' || c == '+') {
            s.push(c);
            self.bump();
        }
        let hex = self.peek(0) == Some('0') && matches!(self.peek(1), Some('x' | 'X'));
        while let Some(c) = self.peek(0) {
            let exponent_sign = (c == '+' || c == '-')
                && s.chars().last().is_some_and(|p| {
                    if hex {
                        p == 'p' || p == 'P'
                    } else {
                        p == 'e' || p == 'E'
                    }
                });
            if c.is_ascii_alphanumeric() || c == '.' || exponent_sign {
                s.push(c);
                self.bump();
            } else {
                break;
            }
        }
        Tok::Number(s)
    }

    fn string(&mut self, line: u32, column: u32) -> Result<Tok, TextError> {
        self.bump();
        let mut s = String::new();
        loop {
            let (l, col) = (self.line, self.column);
            if let Some(&b) = self.bytes.get(self.pos).filter(|b| !b.is_ascii()) {
                // A multi-byte character: copied whole (the text is valid UTF-8).
                let len = match b {
                    0xf0.. => 4,
                    0xe0.. => 3,
                    _ => 2,
                };
                let end = (self.pos + len).min(self.bytes.len());
                s.push_str(std::str::from_utf8(&self.bytes[self.pos..end]).unwrap_or("\u{fffd}"));
                for _ in self.pos..end {
                    self.bump();
                }
                continue;
            }
            match self.bump() {
                None => return Err(self.error(line, column, "unterminated string")),
                Some('"') => return Ok(Tok::Str(s)),
                Some('\\') => match self.bump() {
                    Some('"') => s.push('"'),
                    Some('\\') => s.push('\\'),
                    Some('n') => s.push('\n'),
                    Some('t') => s.push('\t'),
                    Some('r') => s.push('\r'),
                    Some('u') if self.peek(0) == Some('{') => {
                        self.bump();
                        let mut hex = String::new();
                        while let Some(c) = self.peek(0).filter(|c| c.is_ascii_hexdigit()) {
                            hex.push(c);
                            self.bump();
                        }
                        let c = (self.bump() == Some('}') && hex.len() <= 6)
                            .then(|| u32::from_str_radix(&hex, 16).ok())
                            .flatten()
                            .and_then(char::from_u32)
                            .ok_or_else(|| self.error(l, col, "bad \\u{…} escape"))?;
                        s.push(c);
                    }
                    None => return Err(self.error(line, column, "unterminated string")),
                    Some(other) => {
                        return Err(self.error(l, col, format!("unknown escape \\{other}")));
                    }
                },
                Some(c) => s.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        tokenize(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn numbers_keep_their_exponent_signs() {
        assert_eq!(
            toks("fp16(-0x1.4p+3) x(1e-5, 0x1e, -inf) -> ;"),
            vec![
                Tok::Ident("fp16".into()),
                Tok::Punct('('),
                Tok::Number("-0x1.4p+3".into()),
                Tok::Punct(')'),
                Tok::Ident("x".into()),
                Tok::Punct('('),
                Tok::Number("1e-5".into()),
                Tok::Punct(','),
                Tok::Number("0x1e".into()),
                Tok::Punct(','),
                Tok::Number("-inf".into()),
                Tok::Punct(')'),
                Tok::Arrow,
                Tok::Punct(';'),
            ]
        );
    }

    #[test]
    fn positions_and_errors() {
        let t = tokenize("a\n  \"b\\\"c\" // note\n  d").unwrap();
        assert_eq!((t[1].line, t[1].column), (2, 3));
        assert_eq!(t[1].tok, Tok::Str("b\"c".into()));
        assert_eq!((t[2].line, t[2].column), (3, 3));
        let e = tokenize("x = \"open").unwrap_err();
        assert_eq!((e.line, e.column), (1, 5));
        let e = tokenize("x $").unwrap_err();
        assert_eq!((e.line, e.column), (1, 3));
        assert!(tokenize("\"\\q\"").is_err());
        assert!(tokenize("\"\\u{110000}\"").is_err());
    }
}

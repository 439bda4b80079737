//! Erlang and Elixir terms, as far as `rebar.lock`, `mix.lock` and a hex tarball's
//! `metadata.config` write them: tuples, lists, maps, binaries (Erlang), strings, atoms, integers
//! and comments. None of these files is code to run, so nothing else (variables, calls,
//! operators) is accepted.

/// What is wrong, and on which line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad {
    /// 1-based.
    pub line: usize,
    pub reason: String,
}

impl Bad {
    pub fn new(line: usize, reason: impl Into<String>) -> Bad {
        Bad {
            line,
            reason: reason.into(),
        }
    }
}

fn is_hex(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_hexdigit())
}

pub struct Term {
    /// Where the term starts, for errors about its meaning.
    pub line: usize,
    pub kind: Kind,
}

pub enum Kind {
    Atom(String),
    /// A string, a binary or a charlist: the lock files use them alike, for text.
    Text(String),
    /// Nothing in the lock files that matters is a number, so its value is not kept.
    Int,
    Tuple(Vec<Term>),
    List(Vec<Term>),
    Map(Vec<(Term, Term)>),
}

impl Term {
    pub fn text(&self) -> Option<&str> {
        match &self.kind {
            Kind::Text(text) => Some(text),
            _ => None,
        }
    }

    pub fn atom(&self) -> Option<&str> {
        match &self.kind {
            Kind::Atom(atom) => Some(atom),
            _ => None,
        }
    }

    /// Text or an atom: how the locks write names.
    pub fn name(&self) -> Option<&str> {
        self.text().or_else(|| self.atom())
    }

    pub fn tuple(&self) -> Option<&[Term]> {
        match &self.kind {
            Kind::Tuple(items) => Some(items),
            _ => None,
        }
    }

    pub fn list(&self) -> Option<&[Term]> {
        match &self.kind {
            Kind::List(items) => Some(items),
            _ => None,
        }
    }

    pub fn map(&self) -> Option<&[(Term, Term)]> {
        match &self.kind {
            Kind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// A hex package checksum as both locks write it, hex text, lowercased.
    pub fn checksum(&self) -> Result<String, Bad> {
        match self.text() {
            Some(hex) if is_hex(hex) => Ok(hex.to_ascii_lowercase()),
            _ => Err(Bad::new(self.line, "expected a checksum, a string of hex digits")),
        }
    }
}

/// The terms of an Erlang term file (`file:consult/1`), each ending with a `.`.
pub fn erlang(text: &str) -> Result<Vec<Term>, Bad> {
    let mut reader = Reader {
        text,
        at: 0,
        line: 1,
        dialect: Dialect::Erlang,
        depth: 0,
    };
    let mut terms = Vec::new();
    loop {
        reader.skip_space();
        if reader.peek().is_none() {
            return Ok(terms);
        }
        terms.push(reader.term()?);
        reader.expect(".")?;
    }
}

/// The one Elixir term `text` holds.
pub fn elixir(text: &str) -> Result<Term, Bad> {
    let mut reader = Reader {
        text,
        at: 0,
        line: 1,
        dialect: Dialect::Elixir,
        depth: 0,
    };
    let term = reader.term()?;
    reader.skip_space();
    match reader.peek() {
        None => Ok(term),
        Some(c) => Err(Bad::new(
            reader.line,
            format!("unexpected {c:?} after the end of the term"),
        )),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Dialect {
    Erlang,
    Elixir,
}

struct Reader<'a> {
    text: &'a str,
    /// A byte offset into `text`.
    at: usize,
    line: usize,
    dialect: Dialect,
    /// How many tuples, lists and maps the term being read is inside.
    depth: usize,
}

/// The deepest nesting read: lock files and `metadata.config` nest a few levels; a text that
/// nests thousands (a hostile publication) would otherwise exhaust the stack.
const MAX_DEPTH: usize = 64;

impl Reader<'_> {
    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    /// Takes `token` if the text goes on with it (`token` holds no line end to count).
    fn eat(&mut self, token: &str) -> bool {
        let found = self.rest().starts_with(token);
        if found {
            self.at += token.len();
        }
        found
    }

    fn skip_space(&mut self) {
        let comment = match self.dialect {
            Dialect::Erlang => '%',
            Dialect::Elixir => '#',
        };
        while let Some(c) = self.peek() {
            if c == comment {
                while self.bump().is_some_and(|c| c != '\n') {}
            } else if c.is_whitespace() {
                self.bump();
            } else {
                return;
            }
        }
    }

    fn expect(&mut self, token: &str) -> Result<(), Bad> {
        self.skip_space();
        if self.eat(token) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("`{token}`")))
        }
    }

    fn unexpected(&self, wanted: &str) -> Bad {
        let found = match self.peek() {
            Some(c) => format!("{c:?}"),
            None => "the end of the file".to_owned(),
        };
        Bad::new(self.line, format!("expected {wanted}, found {found}"))
    }

    fn term(&mut self) -> Result<Term, Bad> {
        if self.depth == MAX_DEPTH {
            return Err(Bad::new(
                self.line,
                format!("terms nested more than {MAX_DEPTH} deep"),
            ));
        }
        self.depth += 1;
        let term = self.nested_term();
        self.depth -= 1;
        term
    }

    fn nested_term(&mut self) -> Result<Term, Bad> {
        self.skip_space();
        let line = self.line;
        let elixir = self.dialect == Dialect::Elixir;
        let kind = match self.peek() {
            Some('{') => {
                self.bump();
                Kind::Tuple(self.sequence('}')?)
            }
            Some('[') => {
                self.bump();
                Kind::List(self.sequence(']')?)
            }
            Some('"') => Kind::Text(self.quoted('"', "string")?),
            Some('\'') if elixir => Kind::Text(self.quoted('\'', "charlist")?),
            Some('\'') => Kind::Atom(self.quoted('\'', "quoted atom")?),
            Some('<') if !elixir && self.rest().starts_with("<<") => {
                self.eat("<<");
                Kind::Text(self.binary(line)?)
            }
            Some('%') if elixir && self.rest().starts_with("%{") => {
                self.eat("%{");
                Kind::Map(self.map()?)
            }
            Some('#') if !elixir && self.rest().starts_with("#{") => {
                self.eat("#{");
                Kind::Map(self.map()?)
            }
            Some(':') if elixir => {
                self.bump();
                match self.peek() {
                    Some('"') => Kind::Atom(self.quoted('"', "quoted atom")?),
                    _ => Kind::Atom(
                        self.identifier()
                            .ok_or_else(|| self.unexpected("an atom's name"))?,
                    ),
                }
            }
            Some(c) if c == '-' || c.is_ascii_digit() => self.integer()?,
            Some(c) if c.is_ascii_lowercase() => {
                let name = self.identifier().unwrap_or_default();
                // Elixir's bare words are variables or calls, but for these three atoms.
                if elixir && !matches!(name.as_str(), "true" | "false" | "nil") {
                    return Err(Bad::new(line, format!("unexpected name {name:?}")));
                }
                Kind::Atom(name)
            }
            _ => return Err(self.unexpected("a term")),
        };
        Ok(Term { line, kind })
    }

    /// The items up to `close`, apart by commas. A trailing comma is allowed (Elixir allows it;
    /// Erlang files never have one). Lists take Elixir's `key: value` sugar for `{:key, value}`.
    fn sequence(&mut self, close: char) -> Result<Vec<Term>, Bad> {
        let mut items = Vec::new();
        loop {
            self.skip_space();
            if self.peek() == Some(close) {
                self.bump();
                return Ok(items);
            }
            let keyword = if close == ']' { self.keyword()? } else { None };
            items.push(match keyword {
                Some(key) => Term {
                    line: key.line,
                    kind: Kind::Tuple(vec![key, self.term()?]),
                },
                None => self.term()?,
            });
            self.skip_space();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(c) if c == close => {}
                _ => return Err(self.unexpected(&format!("`,` or `{close}`"))),
            }
        }
    }

    /// A map's entries after `%{` (Elixir) or `#{` (Erlang): `key => value`, or Elixir's
    /// `key: value`.
    fn map(&mut self) -> Result<Vec<(Term, Term)>, Bad> {
        let mut entries = Vec::new();
        loop {
            self.skip_space();
            if self.eat("}") {
                return Ok(entries);
            }
            let key = match self.keyword()? {
                Some(key) => key,
                None => {
                    let key = self.term()?;
                    self.expect("=>")?;
                    key
                }
            };
            entries.push((key, self.term()?));
            self.skip_space();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some('}') => {}
                _ => return Err(self.unexpected("`,` or `}`")),
            }
        }
    }

    /// Elixir's keyword key, `name: ` or `"name": `, as the atom it stands for; nothing (and
    /// nothing taken) if the text does not start with one.
    fn keyword(&mut self) -> Result<Option<Term>, Bad> {
        if self.dialect != Dialect::Elixir {
            return Ok(None);
        }
        let (at, line) = (self.at, self.line);
        let name = match self.peek() {
            Some('"') => Some(self.quoted('"', "string")?),
            _ => self.identifier(),
        };
        // The colon must be followed by whitespace: glued to what follows, it would start an atom.
        let is_key = self
            .rest()
            .strip_prefix(':')
            .is_some_and(|after| after.starts_with(char::is_whitespace));
        match name {
            Some(name) if is_key => {
                self.bump();
                Ok(Some(Term {
                    line,
                    kind: Kind::Atom(name),
                }))
            }
            _ => {
                (self.at, self.line) = (at, line);
                Ok(None)
            }
        }
    }

    /// An atom's or a keyword's name: letters, digits, `_` and `@`; in Elixir, a `?` or `!` may end it.
    fn identifier(&mut self) -> Option<String> {
        let first = self.peek().filter(|c| c.is_alphabetic() || *c == '_')?;
        let mut name = String::from(first);
        self.bump();
        while let Some(c) = self
            .peek()
            .filter(|c| c.is_alphanumeric() || matches!(c, '_' | '@'))
        {
            name.push(c);
            self.bump();
        }
        if let Some(c) = self
            .peek()
            .filter(|c| self.dialect == Dialect::Elixir && matches!(c, '?' | '!'))
        {
            name.push(c);
            self.bump();
        }
        Some(name)
    }

    /// An integer (with `_` between digits, as both languages allow); its value is not kept.
    fn integer(&mut self) -> Result<Kind, Bad> {
        self.eat("-");
        if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
            return Err(self.unexpected("a digit"));
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit() || c == '_') {
            self.bump();
        }
        Ok(Kind::Int)
    }

    /// Text between `quote`s, with backslash escapes.
    fn quoted(&mut self, quote: char, what: &str) -> Result<String, Bad> {
        let line = self.line;
        let unterminated = || Bad::new(line, format!("unterminated {what}"));
        self.bump();
        let mut text = String::new();
        loop {
            match self.bump().ok_or_else(unterminated)? {
                c if c == quote => return Ok(text),
                '\\' => text.push(match self.bump().ok_or_else(unterminated)? {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    // `\"`, `\\`, `\'` and the rest stand for themselves.
                    escaped => escaped,
                }),
                c => text.push(c),
            }
        }
    }

    /// An Erlang binary after its `<<`, as rebar writes them: `<<"text">>` or `<<>>`.
    fn binary(&mut self, line: usize) -> Result<String, Bad> {
        self.skip_space();
        let text = if self.peek() == Some('"') {
            self.quoted('"', "string")?
        } else {
            String::new()
        };
        self.skip_space();
        if self.eat(">>") {
            Ok(text)
        } else {
            let found = self.unexpected("`>>`").reason;
            Err(Bad::new(line, format!("unterminated binary: {found}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A term written back, to compare whole structures at a glance.
    fn show(term: &Term) -> String {
        let join = |items: &[Term]| items.iter().map(show).collect::<Vec<_>>().join(",");
        match &term.kind {
            Kind::Atom(atom) => format!(":{atom}"),
            Kind::Text(text) => format!("{text:?}"),
            Kind::Int => "0".to_owned(),
            Kind::Tuple(items) => format!("{{{}}}", join(items)),
            Kind::List(items) => format!("[{}]", join(items)),
            Kind::Map(entries) => {
                let entries: Vec<String> = entries
                    .iter()
                    .map(|(key, value)| format!("{}=>{}", show(key), show(value)))
                    .collect();
                format!("%{{{}}}", entries.join(","))
            }
        }
    }

    #[test]
    fn erlang_terms() {
        let text = "%% comment\n{\"1.2.0\", [{<<\"a\\\"b\">>, {pkg, <<>>, 'Quoted atom', -12, 1_000}, \"x\\\\y\"}]}.\n[].\n";
        let terms = erlang(text).unwrap();
        let shown: Vec<String> = terms.iter().map(show).collect();
        assert_eq!(
            shown,
            [r#"{"1.2.0",[{"a\"b",{:pkg,"",:Quoted atom,0,0},"x\\y"}]}"#, "[]"]
        );
        assert_eq!(terms[1].line, 3);
    }

    #[test]
    fn elixir_terms() {
        let text = "%{\n  # comment\n  \"a\": {:hex, :\"b c\", [x: true, \"y\": nil], 'cl'},\n  b: %{\"k\" => -1,},\n  :c => [1, 2,],\n}\n";
        let term = elixir(text).unwrap();
        assert_eq!(
            show(&term),
            r#"%{:a=>{:hex,:b c,[{:x,:true},{:y,:nil}],"cl"},:b=>%{"k"=>0},:c=>[0,0]}"#
        );
        let entries = term.map().unwrap();
        assert_eq!(entries[1].0.line, 4);
    }

    fn error(result: Result<impl Sized, Bad>) -> (usize, String) {
        match result {
            Err(bad) => (bad.line, bad.reason),
            Ok(_) => panic!("expected an error"),
        }
    }

    #[test]
    fn errors_say_what_and_where() {
        assert_eq!(
            error(erlang("[{<<\"cowboy\",{pkg}}].")),
            (1, "unterminated binary: expected `>>`, found ','".to_owned())
        );
        assert_eq!(
            error(erlang("\n[<<\"cowboy>>].\n")),
            (2, "unterminated string".to_owned())
        );
        assert_eq!(
            error(erlang("[a]")),
            (1, "expected `.`, found the end of the file".to_owned())
        );
        assert_eq!(
            error(erlang("[a b].")),
            (1, "expected `,` or `]`, found 'b'".to_owned())
        );
        assert_eq!(error(erlang("\n\n[X].")).0, 3);
        assert_eq!(error(elixir("%{a: b}")), (1, "unexpected name \"b\"".to_owned()));
        assert_eq!(error(elixir("%{\"a\" {}}")).1, "expected `=>`, found '{'");
        assert_eq!(
            error(elixir("%{} %{}")).1,
            "unexpected '%' after the end of the term"
        );
        assert_eq!(error(elixir("[:]")).1, "expected an atom's name, found ']'");
        assert_eq!(error(elixir("")).1, "expected a term, found the end of the file");
        // Deep nesting is an error, not a stack overflow.
        let deep = format!("{}{}.", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(error(erlang(&deep)).1, "terms nested more than 64 deep");
        let deep = format!("{}1{}", "%{a: ".repeat(100_000), "}".repeat(100_000));
        assert_eq!(error(elixir(&deep)).1, "terms nested more than 64 deep");
        let fine = format!("{}{}.", "[".repeat(64), "]".repeat(64));
        assert!(erlang(&fine).is_ok());
    }
}

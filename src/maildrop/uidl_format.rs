//! Dovecot 2.3's `pop3_uidl_format` (`dovecot-uidl-format`): the format string, parsed once when the
//! configuration is read, and its expansion for one `dovecot-uidlist` record. Pure. Which record a
//! message has, and whether its id is used, is `maildir_uidl.rs`'s business.
//!
//! What Dovecot accepts and how it expands it, as its source has it:
//!
//! - `mail_storage_settings_check` (`src/lib-storage/mail-storage-settings.c`) accepts a `%` followed
//!   only by the one-letter variables `v u m f g` or `%` (so no `%{long}` names), and wants at least one
//!   of the five. It and `parse_uidl_keymask` (`src/pop3/pop3-client.c`, which decides which values
//!   `pop3_get_uid` looks up) scan the format in their own way, not quite as it is expanded; see
//!   `dovecot_scan`.
//! - `pop3_get_uid` (`src/pop3/pop3-commands.c`) gives `v` the UIDVALIDITY and `u` the UID in decimal,
//!   `f` the storage id and `g` the GUID; `maildir_mail_get_special`
//!   (`src/lib-storage/index/maildir/maildir-mail.c`) makes the storage id the file name up to its
//!   first `:`, and the GUID the record's `G` field, or that base name when it has none.
//! - `var_expand_with_funcs` (`src/lib/var-expand.c`) reads `%[-][0]width[.[0][-]width]` and up to ten
//!   modifiers before the letter, applies the modifiers in order, then the offset, then the width:
//!   zero-padded (`%08`) it pads and never cuts; otherwise it cuts. `X` reads the value as a decimal
//!   number (0 if it is not one) and prints it in lower-case hex (`%llx`); `L` and `U` change the
//!   case of ASCII letters.
//!
//! `m`, the MD5 of the header, would mean reading every message at every login (and Dovecot's Maildir
//! does not give it either: its UIDL fails with "Header MD5 not found"), so it is refused here, as are
//! the rarer modifiers (`E R H N M D T`).

use std::fmt;

/// Dovecot's default `pop3_uidl_format`.
pub const DEFAULT: &str = "%08Xu%08Xv";

/// `var_expand`'s `MAX_MODIFIER_COUNT`: a further modifier letter is read as the variable.
const MAX_MODIFIERS: usize = 10;
/// Any longer zero padding makes every id longer than RFC 1939's 70 characters.
const MAX_PADDING: i64 = super::MAX_UID as i64;
/// Offsets and cut widths beyond this select the same as this; it keeps the arithmetic small.
const MAX_NUMBER: i64 = 100_000;

/// A parsed `dovecot-uidl-format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidlFormat {
    text: Box<str>,
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Box<[u8]>),
    Field(Field),
}

/// One `%...x`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    var: Var,
    modifiers: Vec<Modifier>,
    offset: i64,
    width: i64,
    zero_padding: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Uid,
    Validity,
    FileName,
    Guid,
    /// `%%`: a `%`, to which the modifiers apply all the same.
    Percent,
    /// A `%u`, `%f` or `%g` Dovecot's scan of the format missed (see `dovecot_scan`): Dovecot never
    /// looks the value up, and expands the variable as empty.
    Unset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Modifier {
    Lower,
    Upper,
    Hex,
}

/// What a record gives the variables.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    pub uid: u32,
    pub validity: u32,
    /// The file's base name (`%f`).
    pub filename: &'a [u8],
    /// The record's `G` field, empty when it has none (`%g` is then the base name).
    pub guid: &'a [u8],
}

/// A format poplar cannot reproduce, or that Dovecot would not have accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// `%m`, the header's MD5.
    Md5,
    /// `%{name}`: Dovecot 2.3 refuses long names here.
    LongName,
    /// A letter that is not a variable of `pop3_uidl_format`.
    Unknown(char),
    /// A width or modifiers with no variable after them.
    Unfinished,
    Modifier(char),
    /// Zero padding past 70 characters.
    Padding(i64),
    /// A width or offset past 2147483647, where Dovecot's arithmetic overflows.
    Number,
    /// None of `%u`, `%f`, `%g`: every message would get the same id.
    NoMessageVariable,
    /// Literal text outside `0x21..=0x7E`: no id would be valid.
    NotPrintable,
    /// In quotes, as in `dovecot.conf`, whose parser drops them.
    Quoted,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Md5 => f.write_str(
                "%m (the header's MD5) would mean reading every message at every login; not supported",
            ),
            FormatError::LongName => {
                f.write_str("%{name} is not accepted by Dovecot 2.3; use %u, %v, %f or %g")
            }
            FormatError::Unknown(c) => write!(f, "unknown variable %{c} (expected u, v, f, g or %)"),
            FormatError::Unfinished => f.write_str("a % with no variable after it"),
            FormatError::Modifier(c) => {
                write!(f, "modifier {c} is not supported (only L, U and X)")
            }
            FormatError::Padding(n) => write!(f, "padding to {n} makes every id over 70 characters"),
            FormatError::NoMessageVariable => {
                f.write_str("none of %u, %f, %g: every message would get the same id")
            }
            FormatError::Number => f.write_str(
                "a width or offset over 2147483647, where Dovecot's own arithmetic overflows",
            ),
            FormatError::Quoted => f.write_str(
                "in quotes: Dovecot's configuration drops them; give the format without them",
            ),
            FormatError::NotPrintable => f.write_str(
                "a space, control or non-ASCII character: unique-ids are printable ASCII (RFC 1939)",
            ),
        }
    }
}

impl std::error::Error for FormatError {}

impl Default for UidlFormat {
    fn default() -> UidlFormat {
        UidlFormat::parse(DEFAULT).expect("the default format parses")
    }
}

impl fmt::Display for UidlFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl UidlFormat {
    /// Parses a format as `var_expand_with_funcs` reads it, refusing what Dovecot 2.3's settings check
    /// refuses and what poplar cannot reproduce.
    pub fn parse(text: &str) -> Result<UidlFormat, FormatError> {
        let bytes = text.as_bytes();
        // `pop3_uidl_format = "%v.%u"` in dovecot.conf is `%v.%u`; copied as it is, the quotes would
        // go into every id, and every message kept on the server would be downloaded again.
        if let [q @ (b'"' | b'\''), .., last] = bytes {
            if q == last {
                return Err(FormatError::Quoted);
            }
        }
        let mut pieces = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let Some(len) = memchr::memchr(b'%', &bytes[i..]) else {
                pieces.push(Piece::Literal(bytes[i..].into()));
                break;
            };
            if len > 0 {
                pieces.push(Piece::Literal(bytes[i..i + len].into()));
            }
            i += len + 1;
            // A lone `%` at the very end: the settings check passes it and the expansion drops it.
            if i == bytes.len() {
                break;
            }
            let (field, next) = field(text, i)?;
            pieces.push(Piece::Field(field));
            i = next;
        }
        let seen = dovecot_scan(text)?;
        for piece in &mut pieces {
            if let Piece::Field(f) = piece {
                if matches!(f.var, Var::Uid | Var::FileName | Var::Guid) && !seen.contains(&f.var) {
                    f.var = Var::Unset;
                }
            }
        }
        let vars = || {
            pieces.iter().filter_map(|p| match p {
                Piece::Field(f) => Some(f.var),
                Piece::Literal(_) => None,
            })
        };
        if !vars().any(|v| matches!(v, Var::Uid | Var::FileName | Var::Guid)) {
            return Err(FormatError::NoMessageVariable);
        }
        let printable = |b: &u8| (0x21..=0x7e).contains(b);
        if !pieces.iter().all(|p| match p {
            Piece::Literal(text) => text.iter().all(printable),
            Piece::Field(_) => true,
        }) {
            return Err(FormatError::NotPrintable);
        }
        Ok(UidlFormat {
            text: text.into(),
            pieces,
        })
    }

    /// Whether this is Dovecot's default, which `maildir_uidl.rs` expands without this machinery.
    pub fn is_default(&self) -> bool {
        &*self.text == DEFAULT
    }

    /// The id Dovecot gives a message with these variables, as octets; whether it is a valid
    /// unique-id is the caller's question.
    pub fn expand(&self, vars: &Vars<'_>) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.extend_from_slice(text),
                Piece::Field(field) => field.expand(vars, &mut out),
            }
        }
        out
    }
}

/// Reads the field after the `%` at `start - 1`: the field and where the text goes on.
fn field(text: &str, start: usize) -> Result<(Field, usize), FormatError> {
    let bytes = text.as_bytes();
    let mut i = start;
    let at = |i: usize| bytes.get(i).copied();
    let number = |i: &mut usize| {
        let mut n: i64 = 0;
        while let Some(d @ b'0'..=b'9') = at(*i) {
            n = n * 10 + i64::from(d - b'0');
            // var_expand adds the digits up in an `int`; past it, Dovecot's ids are whatever the
            // overflow made of the number.
            if n > i64::from(i32::MAX) {
                return Err(FormatError::Number);
            }
            *i += 1;
        }
        Ok(n.min(MAX_NUMBER))
    };
    let (mut offset, mut zero_padding) = (0, false);
    let mut sign = 1;
    if at(i) == Some(b'-') {
        sign = -1;
        i += 1;
    }
    if at(i) == Some(b'0') {
        zero_padding = true;
        i += 1;
    }
    // Without a `.` the sign is dropped, as var_expand drops it.
    let mut width = number(&mut i)?;
    if at(i) == Some(b'.') {
        i += 1;
        offset = sign * width;
        zero_padding = at(i) == Some(b'0');
        if zero_padding {
            i += 1;
        }
        sign = 1;
        if at(i) == Some(b'-') {
            sign = -1;
            i += 1;
        }
        width = sign * number(&mut i)?;
    }
    let mut modifiers = Vec::new();
    while modifiers.len() < MAX_MODIFIERS {
        match at(i) {
            Some(b'L') => modifiers.push(Modifier::Lower),
            Some(b'U') => modifiers.push(Modifier::Upper),
            Some(b'X') => modifiers.push(Modifier::Hex),
            Some(c @ (b'E' | b'R' | b'H' | b'N' | b'M' | b'D' | b'T')) => {
                return Err(FormatError::Modifier(char::from(c)));
            }
            _ => break,
        }
        i += 1;
    }
    let var = match at(i) {
        None => return Err(FormatError::Unfinished),
        Some(b'u') => Var::Uid,
        Some(b'v') => Var::Validity,
        Some(b'f') => Var::FileName,
        Some(b'g') => Var::Guid,
        Some(b'%') => Var::Percent,
        Some(b'm') => return Err(FormatError::Md5),
        Some(b'{') => return Err(FormatError::LongName),
        Some(_) => {
            let c = text[i..].chars().next().unwrap_or('?');
            return Err(FormatError::Unknown(c));
        }
    };
    if zero_padding && width > MAX_PADDING {
        return Err(FormatError::Padding(width));
    }
    let field = Field {
        var,
        modifiers,
        offset,
        width,
        zero_padding,
    };
    Ok((field, i + 1))
}

/// The variables Dovecot looks up for this format, as its settings check
/// (`mail_storage_settings_check`) and `parse_uidl_keymask` (`src/pop3/pop3-client.c`) find them:
/// each `%` not at the end is followed by `var_get_key` (digits, `-` and one `.` skipped, then any
/// number of modifiers), and the scan goes on one character past the `%`, not past the field. So
/// the `%` that closes `%-%` or `%X%` is taken for the start of another field, and the letter after
/// it for a variable: one the check refuses refuses the format, and a `%u`, `%f` or `%g` seen only
/// by the expansion is empty in Dovecot's ids.
fn dovecot_scan(text: &str) -> Result<Vec<Var>, FormatError> {
    let bytes = text.as_bytes();
    let skip = |mut i: usize, set: &dyn Fn(u8) -> bool| {
        while bytes.get(i).is_some_and(|&b| set(b)) {
            i += 1;
        }
        i
    };
    let mut seen = Vec::new();
    let mut p = 0;
    while p < bytes.len() {
        if bytes[p] == b'%' && p + 1 < bytes.len() {
            p += 1;
            let mut k = skip(p, &|b| b.is_ascii_digit() || b == b'-');
            if bytes.get(k) == Some(&b'.') {
                k = skip(k + 1, &|b| b.is_ascii_digit() || b == b'-');
            }
            k = skip(k, &|b| b"LUEXRHNMDT".contains(&b));
            match bytes.get(k) {
                Some(b'u') => seen.push(Var::Uid),
                Some(b'f') => seen.push(Var::FileName),
                Some(b'g') => seen.push(Var::Guid),
                Some(b'v' | b'%') => {}
                Some(b'm') => return Err(FormatError::Md5),
                Some(b'{') => return Err(FormatError::LongName),
                None => return Err(FormatError::Unfinished),
                // Only ASCII was skipped since the `%`: `k` is on a character boundary.
                Some(_) => {
                    return Err(FormatError::Unknown(
                        text[k..].chars().next().unwrap_or('?'),
                    ));
                }
            }
        }
        p += 1;
    }
    Ok(seen)
}

impl Field {
    fn expand(&self, vars: &Vars<'_>, out: &mut Vec<u8>) {
        let mut value: Vec<u8> = match self.var {
            Var::Uid => vars.uid.to_string().into_bytes(),
            Var::Validity => vars.validity.to_string().into_bytes(),
            Var::FileName => vars.filename.to_vec(),
            Var::Guid if vars.guid.is_empty() => vars.filename.to_vec(),
            Var::Guid => vars.guid.to_vec(),
            Var::Percent => b"%".to_vec(),
            Var::Unset => Vec::new(),
        };
        for modifier in &self.modifiers {
            match modifier {
                Modifier::Lower => value.make_ascii_lowercase(),
                Modifier::Upper => value.make_ascii_uppercase(),
                Modifier::Hex => value = format!("{:x}", decimal(&value)).into_bytes(),
            }
        }
        // The offset: from the end when negative, and only when the value is longer.
        let len = value.len() as i64;
        let value = if self.offset < 0 {
            let from = if len > -self.offset {
                len + self.offset
            } else {
                0
            };
            &value[from as usize..]
        } else {
            &value[self.offset.min(len) as usize..]
        };
        let len = value.len() as i64;
        if self.width == 0 {
            out.extend_from_slice(value);
        } else if !self.zero_padding {
            // A negative width leaves that many off the end; var_expand hands a negative result to
            // an unsigned length, which keeps the whole value.
            let keep = if self.width < 0 {
                len + self.width
            } else {
                self.width
            };
            let keep = if keep < 0 { len } else { keep.min(len) };
            out.extend_from_slice(&value[..keep as usize]);
        } else {
            for _ in len..self.width {
                out.push(b'0');
            }
            out.extend_from_slice(value);
        }
    }
}

/// `str_to_ullong`: the whole value as a decimal number, 0 when it is not one or does not fit.
fn decimal(value: &[u8]) -> u64 {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return 0;
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "uidl_format_tests.rs"]
mod tests;

//! MIL text → program. Accepts the syntax of Apple's compiler in both its forms (`program(1.0)`
//! with `tensor<fp16, []>` scalars and `program(1.3)` with bare `fp16` scalars), hexadecimal
//! and decimal floats, nested or flat list literals, and `BLOBFILE` references resolved by the
//! caller. Values must have static shapes; control flow (nested blocks) is refused.

use super::TextError;
use super::lex::{Tok, Token, tokenize};
use super::literal::parse_float;
use crate::blob::BlobFile;
use crate::program::{Binding, Function, Operation, Opset, Program, Var};
use crate::{ConstValue, DType, TensorType, catalogue};
use half::{bf16, f16};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Resolves a `BLOBFILE` path (`@model_path/weights/weight.bin`) to the weight file.
pub type BlobResolver<'a> = dyn FnMut(&str) -> Result<Arc<BlobFile>, String> + 'a;

/// Deepest nesting of list literals accepted.
const MAX_NESTING: usize = 32;

/// Most elements a value's type may declare (2^40: far beyond any model, small enough that
/// sizes computed from it cannot overflow).
const MAX_ELEMENTS: usize = 1 << 40;

/// Parses MIL text into a program. Op semantics are not checked here (see
/// [`crate::graph::check_program`]); syntax, types and literal values are.
pub fn parse_program(text: &str, blobs: &mut BlobResolver<'_>) -> Result<Program, TextError> {
    let tokens = tokenize(text)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        blobs,
    };
    p.program()
}

/// A parsed type: a tensor (scalars have rank 0) or a dictionary.
enum TextType {
    Tensor(TensorType),
    Dict,
}

/// One element of a literal, with where it was written.
enum Element {
    Number(String),
    Str(String),
    Bool(bool),
}

struct Parser<'a, 'b> {
    tokens: Vec<Token>,
    pos: usize,
    blobs: &'a mut BlobResolver<'b>,
}

impl Parser<'_, '_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|t| &t.tok)
    }

    fn peek_at(&self, ahead: usize) -> Option<&Tok> {
        self.tokens.get(self.pos + ahead).map(|t| &t.tok)
    }

    /// An error at the current token (or the end of the text).
    fn error(&self, reason: impl Into<String>) -> TextError {
        self.error_at(self.pos, reason)
    }

    fn error_at(&self, pos: usize, reason: impl Into<String>) -> TextError {
        let (line, column) = match self.tokens.get(pos).or(self.tokens.last()) {
            Some(t) => (t.line, t.column),
            None => (1, 1),
        };
        TextError {
            line,
            column,
            reason: reason.into(),
        }
    }

    fn found(&self) -> String {
        self.peek()
            .map(Tok::describe)
            .unwrap_or_else(|| "the end of the text".into())
    }

    fn expect_punct(&mut self, c: char) -> Result<(), TextError> {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(format!("expected `{c}`, found {}", self.found())))
        }
    }

    fn eat_punct(&mut self, c: char) -> bool {
        let yes = self.peek() == Some(&Tok::Punct(c));
        if yes {
            self.pos += 1;
        }
        yes
    }

    /// `item (, item)*`: one or more items separated by commas.
    fn separated<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, TextError>,
    ) -> Result<Vec<T>, TextError> {
        let mut out = vec![item(self)?];
        while self.eat_punct(',') {
            out.push(item(self)?);
        }
        Ok(out)
    }

    /// Zero or more comma-separated items, then `close`.
    fn until<T>(
        &mut self,
        close: char,
        item: impl FnMut(&mut Self) -> Result<T, TextError>,
    ) -> Result<Vec<T>, TextError> {
        if self.eat_punct(close) {
            return Ok(Vec::new());
        }
        let out = self.separated(item)?;
        self.expect_punct(close)?;
        Ok(out)
    }

    fn ident(&mut self, what: &str) -> Result<String, TextError> {
        match self.peek() {
            Some(Tok::Ident(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.error(format!("expected {what}, found {}", self.found()))),
        }
    }

    fn keyword(&mut self, word: &str) -> Result<(), TextError> {
        match self.peek() {
            Some(Tok::Ident(s)) if s == word => {
                self.pos += 1;
                Ok(())
            }
            _ => Err(self.error(format!("expected `{word}`, found {}", self.found()))),
        }
    }

    fn program(&mut self) -> Result<Program, TextError> {
        self.keyword("program")?;
        self.expect_punct('(')?;
        let at = self.pos;
        match self.peek() {
            Some(Tok::Number(v)) if v.starts_with("1.") || v == "1" => self.pos += 1,
            _ => {
                return Err(self.error_at(
                    at,
                    format!("expected a MIL version 1.x, found {}", self.found()),
                ));
            }
        }
        self.expect_punct(')')?;
        let mut build_info = BTreeMap::new();
        if self.eat_punct('[') {
            self.separated(|p| {
                let at = p.pos;
                let key = p.ident("a program attribute")?;
                p.expect_punct('=')?;
                if key != "buildInfo" {
                    return Err(p.error_at(at, format!("unknown program attribute `{key}`")));
                }
                build_info = p.string_dict()?;
                Ok(())
            })?;
            self.expect_punct(']')?;
        }
        self.expect_punct('{')?;
        let mut functions = BTreeMap::new();
        while self.peek() != Some(&Tok::Punct('}')) {
            let at = self.pos;
            let (name, f) = self.function()?;
            if functions.insert(name.clone(), f).is_some() {
                return Err(self.error_at(at, format!("function `{name}` is defined twice")));
            }
        }
        self.expect_punct('}')?;
        if self.pos != self.tokens.len() {
            return Err(self.error(format!(
                "expected the end of the text, found {}",
                self.found()
            )));
        }
        Ok(Program {
            functions,
            build_info,
        })
    }

    /// `dict<string, string>({{"k", "v"}, …})` (either scalar spelling).
    fn string_dict(&mut self) -> Result<BTreeMap<String, String>, TextError> {
        let at = self.pos;
        match self.type_()? {
            TextType::Dict => {}
            TextType::Tensor(_) => return Err(self.error_at(at, "expected a dict<string, string>")),
        }
        self.expect_punct('(')?;
        self.expect_punct('{')?;
        let pairs = self.until('}', |p| {
            p.expect_punct('{')?;
            let k = p.string_literal()?;
            p.expect_punct(',')?;
            let v = p.string_literal()?;
            p.expect_punct('}')?;
            Ok((k, v))
        })?;
        self.expect_punct(')')?;
        Ok(pairs.into_iter().collect())
    }

    fn string_literal(&mut self) -> Result<String, TextError> {
        match self.peek() {
            Some(Tok::Str(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.error(format!("expected a string, found {}", self.found()))),
        }
    }

    fn function(&mut self) -> Result<(String, Function), TextError> {
        self.keyword("func")?;
        let name = self.ident("a function name")?;
        let at = self.pos;
        if !self.eat_punct('<') {
            return Err(self.error(format!(
                "function `{name}` has no opset (`func {name}<ios17>(…)`)"
            )));
        }
        let opset_name = self.ident("an opset (ios15 … ios18)")?;
        let opset = opset_from_text(&opset_name)
            .ok_or_else(|| self.error_at(at + 1, format!("unknown opset `{opset_name}`")))?;
        self.expect_punct('>')?;
        self.expect_punct('(')?;
        let inputs = self.until(')', |p| p.declaration("a function input", "an input name"))?;
        self.expect_punct('{')?;
        let mut operations = Vec::new();
        while self.peek() != Some(&Tok::Punct('}')) {
            if self.peek().is_none() {
                return Err(self.error(format!("function `{name}` is not closed with `}}`")));
            }
            operations.push(self.operation(opset)?);
        }
        self.expect_punct('}')?;
        if self.peek() != Some(&Tok::Arrow) {
            return Err(self.error(format!(
                "expected `-> (outputs)` after the body of `{name}`, found {}",
                self.found()
            )));
        }
        self.pos += 1;
        self.expect_punct('(')?;
        let outputs = self.until(')', |p| p.ident("an output name"))?;
        self.expect_punct(';')?;
        Ok((
            name,
            Function {
                inputs,
                opset,
                operations,
                outputs,
            },
        ))
    }

    fn operation(&mut self, opset: Opset) -> Result<Operation, TextError> {
        let start = self.pos;
        let outputs = self.separated(|p| p.declaration("an op output", "an output name"))?;
        self.expect_punct('=')?;
        let op_type = self.ident("an op type")?;
        self.expect_punct('(')?;
        let mut inputs: Vec<(String, Vec<Binding>)> = Vec::new();
        self.until(')', |p| {
            let at = p.pos;
            let param = p.ident("a parameter name")?;
            p.expect_punct('=')?;
            let bindings = if p.eat_punct('(') {
                let list = p.separated(Self::binding)?;
                p.expect_punct(')')?;
                list
            } else {
                vec![p.binding()?]
            };
            if inputs.iter().any(|(q, _)| *q == param) {
                return Err(p.error_at(at, format!("parameter `{param}` is bound twice")));
            }
            inputs.push((param, bindings));
            Ok(())
        })?;
        let mut name = None;
        let mut attributes = BTreeMap::new();
        if self.eat_punct('[') {
            self.separated(|p| {
                let at = p.pos;
                let key = p.ident("an attribute name")?;
                p.expect_punct('=')?;
                let value = p.value()?;
                if key == "name" {
                    match value.as_str() {
                        Some(s) if value.ty.shape.is_empty() => name = Some(s.to_string()),
                        _ => return Err(p.error_at(at, "the `name` attribute must be a string")),
                    }
                } else if attributes.insert(key.clone(), value).is_some() {
                    return Err(p.error_at(at, format!("attribute `{key}` is given twice")));
                }
                Ok(())
            })?;
            self.expect_punct(']')?;
        }
        if self.peek() == Some(&Tok::Punct('{')) {
            return Err(self.error(format!(
                "`{op_type}`: nested blocks (control flow) are not supported"
            )));
        }
        self.expect_punct(';')?;
        let name = name.ok_or_else(|| {
            self.error_at(start, format!("`{op_type}` op has no `name` attribute"))
        })?;
        // Parameters in catalogue order, as the protobuf reader keeps them.
        let order = |p: &str| catalogue::param_position(&op_type, opset, p);
        inputs.sort_by(|(a, _), (b, _)| order(a).cmp(&order(b)).then(a.cmp(b)));
        Ok(Operation {
            op_type,
            name,
            inputs,
            outputs,
            attributes,
        })
    }

    /// `type name`: a function input or an op output (`what` and `named` for errors).
    fn declaration(&mut self, what: &str, named: &str) -> Result<Var, TextError> {
        let ty = self.tensor_type(what)?;
        let name = self.ident(named)?;
        Ok(Var::new(name, ty))
    }

    fn binding(&mut self) -> Result<Binding, TextError> {
        if self.starts_value() {
            Ok(Binding::Value(self.value()?))
        } else {
            Ok(Binding::Name(self.ident("a value name or a literal")?))
        }
    }

    /// Whether a typed literal starts here (`tensor<…>(…)`, `fp16(…)`), not a value name.
    fn starts_value(&self) -> bool {
        match (self.peek(), self.peek_at(1)) {
            (Some(Tok::Ident(s)), Some(Tok::Punct('<'))) => s == "tensor" || s == "dict",
            (Some(Tok::Ident(s)), Some(Tok::Punct('('))) => DType::from_name(s).is_some(),
            _ => false,
        }
    }

    /// `tensor<dtype, [dims]>`, a bare dtype (a scalar) or `dict<K, V>`.
    fn type_(&mut self) -> Result<TextType, TextError> {
        let at = self.pos;
        let word = self.ident("a type")?;
        match word.as_str() {
            "tensor" => {
                self.expect_punct('<')?;
                let dt_at = self.pos;
                let dt = self.ident("an element type")?;
                let dtype = DType::from_name(&dt)
                    .ok_or_else(|| self.error_at(dt_at, format!("unknown element type `{dt}`")))?;
                self.expect_punct(',')?;
                self.expect_punct('[')?;
                let mut shape = Vec::new();
                let mut count: usize = 1;
                if !self.eat_punct(']') {
                    loop {
                        let d_at = self.pos;
                        let d = match self.peek() {
                            Some(Tok::Number(n)) => n.parse::<usize>().ok(),
                            _ => None,
                        }
                        .ok_or_else(|| {
                            self.error(format!(
                                "expected a dimension (shapes must be static), found {}",
                                self.found()
                            ))
                        })?;
                        self.pos += 1;
                        count = count
                            .checked_mul(d)
                            .filter(|&c| c <= MAX_ELEMENTS)
                            .ok_or_else(|| {
                                self.error_at(d_at, "the shape has too many elements")
                            })?;
                        shape.push(d);
                        if !self.eat_punct(',') {
                            break;
                        }
                    }
                    self.expect_punct(']')?;
                }
                self.expect_punct('>')?;
                Ok(TextType::Tensor(TensorType::new(dtype, shape)))
            }
            "dict" => {
                self.expect_punct('<')?;
                for (i, what) in ["key", "value"].into_iter().enumerate() {
                    let k_at = self.pos;
                    // A nested `dict` is refused before recursing into it, so that
                    // `dict<dict<dict<…` without end cannot overflow the stack.
                    let nested = self.peek() == Some(&Tok::Ident("dict".into()));
                    match (!nested).then(|| self.type_()).transpose()? {
                        Some(TextType::Tensor(t))
                            if t.dtype == DType::String && t.shape.is_empty() => {}
                        _ => {
                            return Err(self.error_at(
                                k_at,
                                format!("only dict<string, string> is supported ({what} type)"),
                            ));
                        }
                    }
                    if i == 0 {
                        self.expect_punct(',')?;
                    }
                }
                self.expect_punct('>')?;
                Ok(TextType::Dict)
            }
            "list" | "state" => Err(self.error_at(at, format!("{word} types are not supported"))),
            other => match DType::from_name(other) {
                Some(d) => Ok(TextType::Tensor(TensorType::scalar(d))),
                None => Err(self.error_at(at, format!("unknown type `{other}`"))),
            },
        }
    }

    fn tensor_type(&mut self, what: &str) -> Result<TensorType, TextError> {
        let at = self.pos;
        match self.type_()? {
            TextType::Tensor(t) => Ok(t),
            TextType::Dict => Err(self.error_at(at, format!("{what} must be a tensor"))),
        }
    }

    /// A typed literal: `T(element)`, `T([elements])` or `T(BLOBFILE(path = …, offset = …))`.
    fn value(&mut self) -> Result<ConstValue, TextError> {
        self.value_of(true)
    }

    fn value_of(&mut self, allow_blob: bool) -> Result<ConstValue, TextError> {
        let at = self.pos;
        let ty = self.tensor_type("a literal")?;
        self.expect_punct('(')?;
        if self.peek() == Some(&Tok::Ident("BLOBFILE".into())) {
            if !allow_blob {
                return Err(self.error("a BLOBFILE inside a BLOBFILE"));
            }
            let v = self.blob_file(ty, at)?;
            self.expect_punct(')')?;
            return Ok(v);
        }
        let mut elements = Vec::new();
        let el_at = self.pos;
        if self.peek() == Some(&Tok::Punct('[')) {
            self.list(&mut elements, 0, ty.element_count())?;
        } else {
            elements.push(self.element()?);
        }
        self.expect_punct(')')?;
        build_const(ty, elements).map_err(|r| self.error_at(el_at, r))
    }

    fn list(
        &mut self,
        out: &mut Vec<Element>,
        depth: usize,
        limit: usize,
    ) -> Result<(), TextError> {
        if depth >= MAX_NESTING {
            return Err(self.error("list literals nested too deeply"));
        }
        self.expect_punct('[')?;
        if self.eat_punct(']') {
            return Ok(());
        }
        loop {
            if self.peek() == Some(&Tok::Punct('[')) {
                self.list(out, depth + 1, limit)?;
            } else {
                if out.len() >= limit {
                    return Err(self.error(format!("more elements than the type holds ({limit})")));
                }
                out.push(self.element()?);
            }
            if !self.eat_punct(',') {
                break;
            }
        }
        self.expect_punct(']')
    }

    fn element(&mut self) -> Result<Element, TextError> {
        let e = match self.peek() {
            Some(Tok::Number(n)) => Element::Number(n.clone()),
            Some(Tok::Str(s)) => Element::Str(s.clone()),
            Some(Tok::Ident(s)) if s == "true" || s == "false" => Element::Bool(s == "true"),
            Some(Tok::Ident(s)) if s == "inf" || s == "nan" => Element::Number(s.clone()),
            _ => return Err(self.error(format!("expected a literal, found {}", self.found()))),
        };
        self.pos += 1;
        Ok(e)
    }

    fn blob_file(&mut self, ty: TensorType, at: usize) -> Result<ConstValue, TextError> {
        self.keyword("BLOBFILE")?;
        self.expect_punct('(')?;
        let mut path = None;
        let mut offset = None;
        loop {
            let k_at = self.pos;
            let key = self.ident("`path` or `offset`")?;
            self.expect_punct('=')?;
            let v = self.value_of(false)?;
            match key.as_str() {
                "path" if v.ty == TensorType::scalar(DType::String) => {
                    path = v.as_str().map(str::to_string)
                }
                "offset" if v.ty.shape.is_empty() && v.ty.dtype.is_int() => {
                    offset = v.to_i64_vec().and_then(|x| x.first().copied())
                }
                _ => {
                    return Err(self.error_at(
                        k_at,
                        format!(
                            "BLOBFILE takes path = string(…) and offset = uint64(…), not `{key}`"
                        ),
                    ));
                }
            }
            if !self.eat_punct(',') {
                break;
            }
        }
        self.expect_punct(')')?;
        let (Some(path), Some(offset)) = (path, offset) else {
            return Err(self.error_at(at, "BLOBFILE needs both a path and an offset"));
        };
        let offset = u64::try_from(offset)
            .map_err(|_| self.error_at(at, format!("negative BLOBFILE offset {offset}")))?;
        let file = (self.blobs)(&path).map_err(|r| self.error_at(at, r))?;
        ConstValue::from_blob(ty, &file, offset).map_err(|r| self.error_at(at, r))
    }
}

/// The opset for its MIL text name (`ios16`, case-insensitive), or its protobuf name.
pub fn opset_from_text(name: &str) -> Option<Opset> {
    let lower = name.to_ascii_lowercase();
    [
        Opset::CoreML5,
        Opset::CoreML6,
        Opset::CoreML7,
        Opset::CoreML8,
    ]
    .into_iter()
    .find(|&o| super::opset_text(o) == lower || o.name() == name)
}

/// A constant of type `ty` from its literal elements (one element fills a tensor of one).
fn build_const(ty: TensorType, elements: Vec<Element>) -> Result<ConstValue, String> {
    let n = ty.element_count();
    if elements.len() != n {
        return Err(format!(
            "{} elements for tensor<{}, {:?}>, which holds {n}",
            elements.len(),
            ty.dtype,
            ty.shape
        ));
    }
    let d = ty.dtype;
    if d == DType::String {
        let strings = elements
            .into_iter()
            .map(|e| match e {
                Element::Str(s) => Ok(s),
                _ => Err("a string tensor holds a non-string element".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(ConstValue {
            ty,
            data: crate::ConstData::Strings(Arc::from(strings)),
        });
    }
    let mut bytes: Vec<u8> = Vec::with_capacity(ty.storage_len());
    let mut small: Vec<u8> = Vec::new();
    let mut small_signed: Vec<i8> = Vec::new();
    for e in elements {
        match (d, e) {
            (DType::Bool, Element::Bool(b)) => bytes.push(b as u8),
            (_, Element::Number(s)) if d.is_float() => {
                let v = parse_float(&s).ok_or_else(|| format!("`{s}` is not a number"))?;
                let overflows = match d {
                    DType::F16 => f16::from_f64(v).is_infinite(),
                    DType::BF16 => bf16::from_f64(v).is_infinite(),
                    DType::F32 => (v as f32).is_infinite(),
                    _ => v.is_infinite(),
                };
                // A finite literal (not `inf`) that the type cannot hold.
                if overflows && !s.contains("inf") {
                    return Err(format!("`{s}` is out of range for {d}"));
                }
                match d {
                    DType::F16 => bytes.extend(f16::from_f64(v).to_le_bytes()),
                    DType::BF16 => bytes.extend(bf16::from_f64(v).to_le_bytes()),
                    DType::F32 => bytes.extend((v as f32).to_le_bytes()),
                    DType::F64 => bytes.extend(v.to_le_bytes()),
                    _ => return Err(format!("{d} literals are not supported")),
                }
            }
            (_, Element::Number(s)) if d.is_int() => {
                let v = parse_int(&s).ok_or_else(|| format!("`{s}` is not an integer"))?;
                let (lo, hi) = int_range(d);
                if v < lo || v > hi {
                    return Err(format!("{v} does not fit {d}"));
                }
                match d {
                    DType::I8 => bytes.push(v as i8 as u8),
                    DType::U8 => bytes.push(v as u8),
                    DType::I16 => bytes.extend((v as i16).to_le_bytes()),
                    DType::U16 => bytes.extend((v as u16).to_le_bytes()),
                    DType::I32 => bytes.extend((v as i32).to_le_bytes()),
                    DType::U32 => bytes.extend((v as u32).to_le_bytes()),
                    DType::I64 => bytes.extend((v as i64).to_le_bytes()),
                    DType::U64 => bytes.extend((v as u64).to_le_bytes()),
                    DType::I4 => small_signed.push(v as i8),
                    _ => small.push(v as u8),
                }
            }
            (_, e) => {
                let what = match e {
                    Element::Bool(_) => "a bool",
                    Element::Str(_) => "a string",
                    Element::Number(_) => "a number",
                };
                return Err(format!("{what} is not a {d} literal"));
            }
        }
    }
    if d == DType::I4 {
        bytes = crate::blob::pack_i4(&small_signed);
    } else if d.is_sub_byte() {
        bytes = crate::blob::pack_bits(&small, d.bits());
    }
    ConstValue::from_bytes(ty, bytes).map_err(|e| e.to_string())
}

fn parse_int(s: &str) -> Option<i128> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = match body.strip_prefix("0x") {
        Some(hex) => i128::from_str_radix(hex, 16).ok()?,
        None if body.bytes().all(|b| b.is_ascii_digit()) && !body.is_empty() => {
            body.parse().ok()?
        }
        None => return None,
    };
    Some(if neg { -v } else { v })
}

fn int_range(d: DType) -> (i128, i128) {
    let bits = d.bits();
    if d == DType::I4 || matches!(d, DType::I8 | DType::I16 | DType::I32 | DType::I64) {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    } else {
        (0, (1i128 << bits) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_literals_beyond_their_type_are_refused() {
        let value = |s: &str| {
            let ty = TensorType::scalar(DType::F16);
            build_const(ty, vec![Element::Number(s.into())])
        };
        assert!(value("65504").is_ok());
        assert!(value("inf").is_ok());
        assert!(value("-0x1p+16").unwrap_err().contains("out of range"));
        assert!(value("1e400").unwrap_err().contains("out of range"));
    }
}

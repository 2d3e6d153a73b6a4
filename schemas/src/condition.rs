//! Success and failure conditions of analysis metrics: small expressions over a measurement's
//! `result`, written as in Argo Rollouts' analysis templates (`result[0] >= 0.95`,
//! `len(result) > 0 && result[0] < 5`, `result.ok == true`).
//!
//! The language: numbers, strings in single or double quotes, `true`, `false`, `nil`;
//! `result` with indexing (`result[0]`) and fields (`result.ok`, `result["a-b"]`);
//! `+ - * /`, comparisons `== != < <= > >=`, `&& || !` (also `and`, `or`, `not`),
//! parentheses, and the functions `len(x)`, `isNaN(x)`, `isInf(x)`, `abs(x)`.
//!
//! Conditions are parsed when a template is applied, so a typo is a validation error with the
//! field path, not a failed rollout; evaluation is pure.

use std::fmt;

/// A value a condition works on: a measurement's result or a part of it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// No value (`nil`, JSON null).
    Nil,
    /// A boolean.
    Bool(bool),
    /// A number (every number is a float, as in Prometheus).
    Number(f64),
    /// A string.
    String(String),
    /// A list (a Prometheus vector's values, a JSON array).
    List(Vec<Value>),
    /// A map (a JSON object), in key order.
    Map(Vec<(String, Value)>),
}

impl Value {
    /// Converts JSON into a value.
    pub fn from_json(json: &serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Nil,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(items) => {
                Value::List(items.iter().map(Value::from_json).collect())
            }
            serde_json::Value::Object(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::List(_) => "list",
            Value::Map(_) => "map",
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => f.write_str("nil"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) => write!(f, "{n}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Value::Map(entries) => {
                f.write_str("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k:?}: {v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

/// A parsed condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    text: String,
    root: Expr,
}

#[derive(Clone, Debug, PartialEq)]
enum Expr {
    Literal(Value),
    Result,
    Index(Box<Expr>, Box<Expr>),
    Field(Box<Expr>, String),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Binary(Box<Expr>, Op, Box<Expr>),
    Call(Func, Box<Expr>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Func {
    Len,
    IsNaN,
    IsInf,
    Abs,
}

/// The most tokens a condition may have.
pub const MAX_TOKENS: usize = 256;

impl Condition {
    /// Parses `text`, or says what is wrong and where.
    pub fn parse(text: &str) -> Result<Condition, String> {
        let tokens = lex(text)?;
        // The parser, the evaluation and the tree's drop all recurse once per level of
        // nesting, and a chain of `||` nests as deep as it is long: a bound on the tokens
        // bounds them all, far above what a condition needs (`result[0] >= 0.95` is 6).
        if tokens.len() > MAX_TOKENS {
            return Err(format!(
                "the condition has {} tokens, above the limit of {MAX_TOKENS}",
                tokens.len()
            ));
        }
        let mut parser = Parser { tokens, at: 0 };
        let root = parser.or()?;
        if let Some(token) = parser.tokens.get(parser.at) {
            return Err(format!("unexpected {token} in condition {text:?}"));
        }
        Ok(Condition {
            text: text.to_owned(),
            root,
        })
    }

    /// Returns the text the condition was parsed from.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Evaluates the condition with `result` bound; it holds when it yields `true`. An error
    /// (an index out of range, a comparison of a string with a number, a non-boolean answer)
    /// says what went wrong.
    pub fn holds(&self, result: &Value) -> Result<bool, String> {
        match eval(&self.root, result)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!(
                "condition {:?} gave {other}, not true or false",
                self.text
            )),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Number(f64),
    String(String),
    Ident(String),
    Sym(&'static str),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Number(n) => write!(f, "number {n}"),
            Token::String(s) => write!(f, "string {s:?}"),
            Token::Ident(s) => write!(f, "{s:?}"),
            Token::Sym(s) => write!(f, "{s:?}"),
        }
    }
}

const SYMBOLS: [&str; 19] = [
    "&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "(", ")", "[", "]", ".", ",", "+", "-", "*",
    "/",
];

fn lex(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || chars[i] == '.'
                    || chars[i] == 'e'
                    || chars[i] == 'E'
                    || ((chars[i] == '-' || chars[i] == '+') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            let number: String = chars[start..i].iter().collect();
            let value = number
                .parse()
                .map_err(|_| format!("bad number {number:?} in condition {text:?}"))?;
            tokens.push(Token::Number(value));
        } else if c == '"' || c == '\'' {
            let start = i + 1;
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += 1;
            }
            if i == chars.len() {
                return Err(format!("unterminated string in condition {text:?}"));
            }
            tokens.push(Token::String(chars[start..i].iter().collect()));
            i += 1;
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let symbol = SYMBOLS
                .iter()
                .find(|s| rest.starts_with(**s))
                .ok_or_else(|| format!("unexpected {c:?} in condition {text:?}"))?;
            tokens.push(Token::Sym(symbol));
            i += symbol.len();
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn eat_sym(&mut self, symbol: &str) -> bool {
        if matches!(self.peek(), Some(Token::Sym(s)) if *s == symbol) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Ident(w)) if w == word) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, symbol: &str) -> Result<(), String> {
        if self.eat_sym(symbol) {
            Ok(())
        } else {
            Err(match self.peek() {
                Some(token) => format!("expected {symbol:?}, found {token}"),
                None => format!("expected {symbol:?} at the end"),
            })
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.eat_sym("||") || self.eat_word("or") {
            left = Expr::Binary(Box::new(left), Op::Or, Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.comparison()?;
        while self.eat_sym("&&") || self.eat_word("and") {
            left = Expr::Binary(Box::new(left), Op::And, Box::new(self.comparison()?));
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Expr, String> {
        let left = self.sum()?;
        let op = [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("<", Op::Lt),
            (">", Op::Gt),
        ]
        .into_iter()
        .find(|(s, _)| self.eat_sym(s));
        match op {
            Some((_, op)) => Ok(Expr::Binary(Box::new(left), op, Box::new(self.sum()?))),
            None => Ok(left),
        }
    }

    fn sum(&mut self) -> Result<Expr, String> {
        let mut left = self.product()?;
        loop {
            let op = if self.eat_sym("+") {
                Op::Add
            } else if self.eat_sym("-") {
                Op::Sub
            } else {
                return Ok(left);
            };
            left = Expr::Binary(Box::new(left), op, Box::new(self.product()?));
        }
    }

    fn product(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        loop {
            let op = if self.eat_sym("*") {
                Op::Mul
            } else if self.eat_sym("/") {
                Op::Div
            } else {
                return Ok(left);
            };
            left = Expr::Binary(Box::new(left), op, Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.eat_sym("!") || self.eat_word("not") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat_sym("-") {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, String> {
        let mut expr = self.primary()?;
        loop {
            if self.eat_sym("[") {
                let index = self.or()?;
                self.expect_sym("]")?;
                expr = Expr::Index(Box::new(expr), Box::new(index));
            } else if self.eat_sym(".") {
                match self.tokens.get(self.at).cloned() {
                    Some(Token::Ident(name)) => {
                        self.at += 1;
                        expr = Expr::Field(Box::new(expr), name);
                    }
                    Some(other) => {
                        return Err(format!("expected a field name after '.', found {other}"));
                    }
                    None => return Err("expected a field name after '.'".to_owned()),
                }
            } else {
                return Ok(expr);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let Some(token) = self.tokens.get(self.at).cloned() else {
            return Err("the condition ends too early".to_owned());
        };
        self.at += 1;
        match token {
            Token::Number(n) => Ok(Expr::Literal(Value::Number(n))),
            Token::String(s) => Ok(Expr::Literal(Value::String(s))),
            Token::Sym("(") => {
                let inner = self.or()?;
                self.expect_sym(")")?;
                Ok(inner)
            }
            Token::Ident(word) => match word.as_str() {
                "true" => Ok(Expr::Literal(Value::Bool(true))),
                "false" => Ok(Expr::Literal(Value::Bool(false))),
                "nil" | "null" => Ok(Expr::Literal(Value::Nil)),
                "result" => Ok(Expr::Result),
                "len" | "isNaN" | "isInf" | "abs" => {
                    let func = match word.as_str() {
                        "len" => Func::Len,
                        "isNaN" => Func::IsNaN,
                        "isInf" => Func::IsInf,
                        _ => Func::Abs,
                    };
                    self.expect_sym("(")?;
                    let arg = self.or()?;
                    self.expect_sym(")")?;
                    Ok(Expr::Call(func, Box::new(arg)))
                }
                other => Err(format!(
                    "unknown name {other:?}: a condition reads `result` (and len, isNaN, isInf, abs)"
                )),
            },
            other => Err(format!("unexpected {other}")),
        }
    }
}

fn eval(expr: &Expr, result: &Value) -> Result<Value, String> {
    Ok(match expr {
        Expr::Literal(v) => v.clone(),
        Expr::Result => result.clone(),
        Expr::Index(target, index) => {
            let target = eval(target, result)?;
            let index = eval(index, result)?;
            match (&target, &index) {
                (Value::List(items), Value::Number(n)) => {
                    let i = *n as i64;
                    if *n != i as f64 || i < 0 || i as usize >= items.len() {
                        return Err(format!(
                            "index {n} out of range of a list of {} values",
                            items.len()
                        ));
                    }
                    items[i as usize].clone()
                }
                (Value::Map(_), Value::String(key)) => field(&target, key)?,
                _ => {
                    return Err(format!(
                        "cannot index a {} with a {}",
                        target.kind(),
                        index.kind()
                    ));
                }
            }
        }
        Expr::Field(target, name) => field(&eval(target, result)?, name)?,
        Expr::Not(inner) => Value::Bool(!truth(&eval(inner, result)?)?),
        Expr::Neg(inner) => Value::Number(-number(&eval(inner, result)?)?),
        Expr::Call(func, arg) => {
            let arg = eval(arg, result)?;
            match func {
                Func::Len => Value::Number(match &arg {
                    Value::List(items) => items.len() as f64,
                    Value::Map(entries) => entries.len() as f64,
                    Value::String(s) => s.chars().count() as f64,
                    other => return Err(format!("len of a {}", other.kind())),
                }),
                Func::IsNaN => Value::Bool(number(&arg)?.is_nan()),
                Func::IsInf => Value::Bool(number(&arg)?.is_infinite()),
                Func::Abs => Value::Number(number(&arg)?.abs()),
            }
        }
        Expr::Binary(left, Op::And, right) => {
            Value::Bool(truth(&eval(left, result)?)? && truth(&eval(right, result)?)?)
        }
        Expr::Binary(left, Op::Or, right) => {
            Value::Bool(truth(&eval(left, result)?)? || truth(&eval(right, result)?)?)
        }
        Expr::Binary(left, op, right) => {
            let (l, r) = (eval(left, result)?, eval(right, result)?);
            match op {
                Op::Eq => Value::Bool(equal(&l, &r)),
                Op::Ne => Value::Bool(!equal(&l, &r)),
                Op::Lt | Op::Le | Op::Gt | Op::Ge => {
                    let ordering = match (&l, &r) {
                        (Value::Number(a), Value::Number(b)) => a.partial_cmp(b),
                        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
                        _ => {
                            return Err(format!(
                                "cannot compare a {} with a {}",
                                l.kind(),
                                r.kind()
                            ));
                        }
                    };
                    // NaN compares false with everything, as in Go and Prometheus.
                    Value::Bool(ordering.is_some_and(|o| match op {
                        Op::Lt => o.is_lt(),
                        Op::Le => o.is_le(),
                        Op::Gt => o.is_gt(),
                        _ => o.is_ge(),
                    }))
                }
                Op::Add => match (&l, &r) {
                    (Value::String(a), Value::String(b)) => Value::String(format!("{a}{b}")),
                    _ => Value::Number(number(&l)? + number(&r)?),
                },
                Op::Sub => Value::Number(number(&l)? - number(&r)?),
                Op::Mul => Value::Number(number(&l)? * number(&r)?),
                Op::Div => Value::Number(number(&l)? / number(&r)?),
                Op::And | Op::Or => unreachable!("handled above"),
            }
        }
    })
}

fn field(target: &Value, name: &str) -> Result<Value, String> {
    match target {
        Value::Map(entries) => Ok(entries
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or(Value::Nil)),
        other => Err(format!("no field {name:?} on a {}", other.kind())),
    }
}

fn truth(value: &Value) -> Result<bool, String> {
    match value {
        Value::Bool(b) => Ok(*b),
        other => Err(format!("expected true or false, found {other}")),
    }
}

fn number(value: &Value) -> Result<f64, String> {
    match value {
        Value::Number(n) => Ok(*n),
        other => Err(format!("expected a number, found {other}")),
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holds(condition: &str, result: Value) -> Result<bool, String> {
        Condition::parse(condition)?.holds(&result)
    }

    #[test]
    fn argo_style_conditions() {
        let vector = Value::List(vec![Value::Number(0.97), Value::Number(0.5)]);
        assert_eq!(holds("result[0] >= 0.95", vector.clone()), Ok(true));
        assert_eq!(holds("result[1] >= 0.95", vector.clone()), Ok(false));
        assert_eq!(
            holds(
                "len(result) == 2 && (result[0] + result[1]) / 2 > 0.7",
                vector.clone()
            ),
            Ok(true)
        );
        assert_eq!(
            holds("result >= 0.95 or result < 0", Value::Number(-1.0)),
            Ok(true)
        );
        assert_eq!(holds("!isNaN(result)", Value::Number(f64::NAN)), Ok(false));
        assert_eq!(holds("result < 1", Value::Number(f64::NAN)), Ok(false));
        let json =
            Value::from_json(&serde_json::json!({"ok": true, "rate": {"p99": 120}, "a-b": "x"}));
        assert_eq!(
            holds("result.ok == true && result.rate.p99 < 200", json.clone()),
            Ok(true)
        );
        assert_eq!(holds("result[\"a-b\"] == 'x'", json), Ok(true));
        assert_eq!(holds("-result < -1e-3", Value::Number(0.5)), Ok(true));
    }

    #[test]
    fn a_condition_nested_or_chained_without_end_is_refused_not_a_stack_overflow() {
        for text in [
            format!("{}result{}", "(".repeat(100_000), ")".repeat(100_000)),
            format!("{}true", "!".repeat(100_000)),
            vec!["true"; 50_000].join(" || "),
        ] {
            let e = Condition::parse(&text).unwrap_err();
            assert!(e.contains("above the limit of 256"), "{e}");
        }
        let deep = format!("{}result{} >= 1", "(".repeat(60), ")".repeat(60));
        assert!(
            Condition::parse(&deep)
                .unwrap()
                .holds(&Value::Number(1.0))
                .unwrap()
        );
    }

    #[test]
    fn errors_say_what_went_wrong() {
        let empty = Value::List(vec![]);
        assert_eq!(
            holds("result[0] > 1", empty),
            Err("index 0 out of range of a list of 0 values".to_owned())
        );
        assert!(
            holds("result > 'a'", Value::Number(1.0))
                .unwrap_err()
                .contains("compare")
        );
        assert!(
            holds("result + 1", Value::Number(1.0))
                .unwrap_err()
                .contains("not true or false")
        );
        assert!(
            Condition::parse("result[0 >= 1")
                .unwrap_err()
                .contains("expected \"]\"")
        );
        assert!(
            Condition::parse("value > 1")
                .unwrap_err()
                .contains("unknown name \"value\"")
        );
        assert!(
            Condition::parse("result >= ")
                .unwrap_err()
                .contains("ends too early")
        );
        assert!(
            Condition::parse("result ~ 1")
                .unwrap_err()
                .contains("unexpected '~'")
        );
        assert!(
            Condition::parse("result > 1 1")
                .unwrap_err()
                .contains("unexpected number 1")
        );
    }
}

//! Success and failure conditions of analysis metrics: small expressions over a measurement's
//! `result`, written as in Argo Rollouts' analysis templates (`result[0] >= 0.95`,
//! `len(result) > 0 && result[0] < 5`, `result.ok == true`).
//!
//! The language: numbers, strings in single or double quotes, `true`, `false`, `nil`;
//! `result` with indexing (`result[0]`) and fields (`result.ok`, `result["a-b"]`);
//! `+ - * /`, comparisons `== != < <= > >=`, `&& || !` (also `and`, `or`, `not`),
//! parentheses, and the functions `len(x)`, `isNaN(x)`, `isInf(x)`, `abs(x)`, `default(x, y)`
//! (`y` when `x` is nil).
//!
//! Predicates over a list, as in expr: `all(list, {pred})`, `any`, `none`, `one` (true or
//! false), `filter(list, {pred})` (the elements it holds for), `map(list, {expr})`, and
//! `count(list, {pred})` (a number). Inside the braces `#` is the current element, indexed
//! and read like `result` (`#[0]`, `#.Value`); in nested braces it is the innermost one:
//! `len(result[0].Values) >= 5 and all(result[0].Values, {# <= 0.01})`.
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
    /// `#`: the element a closure is called with.
    Element,
    /// A builtin over a list and a closure: `all(list, {pred})`.
    Each(Each, Box<Expr>, Box<Expr>),
    /// `default(x, y)`: `y` when `x` is nil (a Datadog query with no points), else `x`.
    Default(Box<Expr>, Box<Expr>),
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Each {
    All,
    Any,
    None,
    One,
    Filter,
    Map,
    Count,
}

impl Each {
    const NAMES: [(&str, Each); 7] = [
        ("all", Each::All),
        ("any", Each::Any),
        ("none", Each::None),
        ("one", Each::One),
        ("filter", Each::Filter),
        ("map", Each::Map),
        ("count", Each::Count),
    ];

    fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, e)| *e == self)
            .map_or("?", |(n, _)| n)
    }
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
        let mut parser = Parser {
            tokens,
            at: 0,
            closures: 0,
        };
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
        let env = Env {
            result,
            element: None,
        };
        match eval(&self.root, env)? {
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

const SYMBOLS: [&str; 22] = [
    "&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "(", ")", "[", "]", ".", ",", "+", "-", "*",
    "/", "{", "}", "#",
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
    /// How many closures the parser is inside: `#` means something only inside one.
    closures: usize,
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
            Token::Sym("#") if self.closures > 0 => Ok(Expr::Element),
            Token::Sym("#") => Err(
                "`#` outside a closure: it is the element in all(list, {# > 0}) and the like"
                    .to_owned(),
            ),
            Token::Ident(word) => match word.as_str() {
                "true" => Ok(Expr::Literal(Value::Bool(true))),
                "false" => Ok(Expr::Literal(Value::Bool(false))),
                "nil" | "null" => Ok(Expr::Literal(Value::Nil)),
                "result" => Ok(Expr::Result),
                "default" => {
                    self.expect_sym("(")?;
                    let value = self.or()?;
                    self.expect_sym(",")?;
                    let fallback = self.or()?;
                    self.expect_sym(")")?;
                    Ok(Expr::Default(Box::new(value), Box::new(fallback)))
                }
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
                name => match Each::NAMES.iter().find(|(n, _)| *n == name) {
                    Some(&(_, each)) => {
                        self.expect_sym("(")?;
                        let list = self.or()?;
                        self.expect_sym(",")?;
                        self.expect_sym("{")?;
                        self.closures += 1;
                        let body = self.or()?;
                        self.closures -= 1;
                        self.expect_sym("}")?;
                        self.expect_sym(")")?;
                        Ok(Expr::Each(each, Box::new(list), Box::new(body)))
                    }
                    None => Err(format!(
                        "unknown name {name:?}: a condition reads `result` (and len, isNaN, \
                         isInf, abs, default, all, any, none, one, filter, map, count)"
                    )),
                },
            },
            other => Err(format!("unexpected {other}")),
        }
    }
}

/// What names mean while evaluating: `result`, and `#` inside a closure.
#[derive(Clone, Copy)]
struct Env<'a> {
    result: &'a Value,
    element: Option<&'a Value>,
}

fn eval(expr: &Expr, env: Env<'_>) -> Result<Value, String> {
    Ok(match expr {
        Expr::Literal(v) => v.clone(),
        Expr::Result => env.result.clone(),
        // The parser lets `#` only into a closure, where it is bound.
        Expr::Element => env.element.cloned().unwrap_or(Value::Nil),
        Expr::Each(each, list, body) => each_of(*each, &eval(list, env)?, body, env)?,
        Expr::Index(target, index) => {
            let target = eval(target, env)?;
            let index = eval(index, env)?;
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
        Expr::Field(target, name) => field(&eval(target, env)?, name)?,
        Expr::Not(inner) => Value::Bool(!truth(&eval(inner, env)?)?),
        Expr::Neg(inner) => Value::Number(-number(&eval(inner, env)?)?),
        Expr::Default(value, fallback) => match eval(value, env)? {
            Value::Nil => eval(fallback, env)?,
            value => value,
        },
        Expr::Call(func, arg) => {
            let arg = eval(arg, env)?;
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
            Value::Bool(truth(&eval(left, env)?)? && truth(&eval(right, env)?)?)
        }
        Expr::Binary(left, Op::Or, right) => {
            Value::Bool(truth(&eval(left, env)?)? || truth(&eval(right, env)?)?)
        }
        Expr::Binary(left, op, right) => {
            let (l, r) = (eval(left, env)?, eval(right, env)?);
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

/// Calls `body` with `#` bound to each element of `list`, as `each` says.
fn each_of(each: Each, list: &Value, body: &Expr, env: Env<'_>) -> Result<Value, String> {
    let Value::List(items) = list else {
        return Err(format!(
            "{} over a {}: the first argument must be a list",
            each.name(),
            list.kind()
        ));
    };
    let call = |item: &Value| {
        let env = Env {
            result: env.result,
            element: Some(item),
        };
        eval(body, env)
    };
    let test = |item: &Value| match call(item)? {
        Value::Bool(b) => Ok(b),
        other => Err(format!(
            "the predicate of {} gave {other} for {item}, not true or false",
            each.name()
        )),
    };
    // The elements the predicate holds for.
    let kept = || -> Result<Vec<&Value>, String> {
        let mut kept = Vec::new();
        for item in items {
            if test(item)? {
                kept.push(item);
            }
        }
        Ok(kept)
    };
    // The first element that decides all, any or none (or an error), as expr stops there.
    let find = |sought: bool| {
        items
            .iter()
            .map(test)
            .find(|t| *t != Ok(!sought))
            .transpose()
    };
    Ok(match each {
        Each::All => Value::Bool(find(false)?.is_none()),
        Each::Any => Value::Bool(find(true)?.is_some()),
        Each::None => Value::Bool(find(true)?.is_none()),
        Each::One => Value::Bool(kept()?.len() == 1),
        Each::Count => Value::Number(kept()?.len() as f64),
        Each::Filter => Value::List(kept()?.into_iter().cloned().collect()),
        Each::Map => Value::List(items.iter().map(call).collect::<Result<_, _>>()?),
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
mod tests;

//! Which tables walrus captures: `source.tables` and `source.exclude_tables`, compiled.
//!
//! A pattern is a `schema.table` glob (`*`, `?`) or `re:<regex>`, a regular expression over
//! the whole `schema.table`, anchored and case-insensitive, as Debezium matches the entries of
//! its `schema.include.list` / `table.include.list` (Java's `Pattern.matches` with
//! `CASE_INSENSITIVE`). The config uses a selection to build publications and plan snapshots;
//! with `source.filter_events` the router also drops the events of unselected tables (see
//! [`crate::router`]).

/// Prefix of a table pattern that is a regular expression (Debezium's `table.include.list`
/// syntax) rather than a `schema.table` glob.
pub const REGEX_PATTERN_PREFIX: &str = "re:";

/// A table pattern of `source.tables` / `source.exclude_tables`: either `schema.table` with
/// `*` and `?` wildcards in either part, or `re:<regex>`, a regular expression matched
/// against the whole `schema.table`, case-insensitively, as Debezium matches its
/// `schema.include.list` and `table.include.list` entries (Java's `Pattern.matches` with
/// `CASE_INSENSITIVE`).
#[derive(Clone, Debug)]
pub enum TablePattern {
    /// `schema.table` with wildcards.
    Glob {
        /// The schema part.
        schema: String,
        /// The table part.
        table: String,
    },
    /// `re:<regex>`, compiled anchored and case-insensitive.
    Regex(regex::Regex),
}

impl PartialEq for TablePattern {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                TablePattern::Glob { schema, table },
                TablePattern::Glob {
                    schema: s2,
                    table: t2,
                },
            ) => schema == s2 && table == t2,
            (TablePattern::Regex(a), TablePattern::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl Eq for TablePattern {}

impl TablePattern {
    /// Parses `schema.table` or `re:<regex>`; `None` when a glob has no dot or an empty
    /// part, or the regex does not compile.
    pub fn parse(p: &str) -> Option<TablePattern> {
        Self::try_parse(p).ok()
    }

    /// Like [`TablePattern::parse`], with the reason when the pattern is refused.
    pub fn try_parse(p: &str) -> Result<TablePattern, String> {
        if let Some(re) = p.strip_prefix(REGEX_PATTERN_PREFIX) {
            return regex::RegexBuilder::new(&format!("^(?:{re})$"))
                .case_insensitive(true)
                .build()
                .map(TablePattern::Regex)
                .map_err(|e| format!("{re:?} is not a valid regular expression: {e}"));
        }
        let bad = || {
            format!("{p:?} is not a pattern of the form schema.table (wildcards * and ? allowed) or re:<regex>")
        };
        let (schema, table) = p.split_once('.').ok_or_else(bad)?;
        if schema.is_empty() || table.is_empty() || table.contains('.') {
            return Err(bad());
        }
        Ok(TablePattern::Glob {
            schema: schema.into(),
            table: table.into(),
        })
    }

    /// The table a glob without wildcards names exactly, as (schema, table).
    pub fn literal(&self) -> Option<(&str, &str)> {
        match self {
            TablePattern::Glob { schema, table }
                if !format!("{schema}{table}").contains(['*', '?']) =>
            {
                Some((schema, table))
            }
            _ => None,
        }
    }

    /// True when the table matches: both parts of a glob, or the whole `schema.table` for
    /// a regex.
    pub fn matches(&self, schema: &str, table: &str) -> bool {
        match self {
            TablePattern::Glob {
                schema: s,
                table: t,
            } => glob(s.as_bytes(), schema.as_bytes()) && glob(t.as_bytes(), table.as_bytes()),
            TablePattern::Regex(re) => re.is_match(&format!("{schema}.{table}")),
        }
    }
}

/// `*` matches any run, `?` one character; iterative with backtracking to the last star.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// `source.tables` minus `source.exclude_tables`, compiled once.
#[derive(Clone, Debug, Default)]
pub struct TableSelection {
    include: Vec<TablePattern>,
    exclude: Vec<TablePattern>,
    all: bool,
}

impl TableSelection {
    /// Compiles the lists; patterns that do not parse are left out (the config's validation
    /// refuses them first). `all`: every table is included (`publication_all_tables`).
    pub fn new(include: &[String], exclude: &[String], all: bool) -> TableSelection {
        let compile =
            |list: &[String]| list.iter().filter_map(|p| TablePattern::parse(p)).collect();
        TableSelection {
            include: compile(include),
            exclude: compile(exclude),
            all,
        }
    }

    /// Whether the table is included and not excluded.
    pub fn selects(&self, schema: &str, table: &str) -> bool {
        (self.all || self.include.iter().any(|p| p.matches(schema, table)))
            && !self.exclude.iter().any(|p| p.matches(schema, table))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_include_then_exclude() {
        let s = TableSelection::new(
            &["re:inventory\\..*".into(), "public.t?".into()],
            &["inventory.audit*".into()],
            false,
        );
        assert!(s.selects("inventory", "customers"));
        assert!(s.selects("Inventory", "Customers"));
        assert!(s.selects("public", "t1"));
        assert!(!s.selects("public", "t12"));
        assert!(!s.selects("inventory", "audit_log"));
        let all = TableSelection::new(&[], &["public.x".into()], true);
        assert!(all.selects("any", "thing") && !all.selects("public", "x"));
    }
}

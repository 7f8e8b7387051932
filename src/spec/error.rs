//! Problems found in the managed repo or the secrets dir, each pointing at a file (and a line and
//! key where known) and saying how to fix it.

use std::fmt;

/// One problem in the input. `Display` gives `file:line: key: message (fix)`, the shape editors
/// and CI logs turn into links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// Repo path (`compose/api/compose.yaml`) or host path of a secrets file.
    pub file: String,
    /// 1-based line, when the problem sits at a known place.
    pub line: Option<u64>,
    /// Dotted key path (`services.api.deploy.replicas`), when the problem is a key.
    pub key: Option<String>,
    pub message: String,
    /// What to do about it.
    pub fix: Option<String>,
}

impl SpecError {
    pub fn new(file: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError {
            file: file.into(),
            line: None,
            key: None,
            message: message.into(),
            fix: None,
        }
    }
    pub fn at_line(mut self, line: Option<u64>) -> Self {
        self.line = line.filter(|l| *l > 0);
        self
    }
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(fix) = &self.fix {
            write!(f, "; {fix}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

/// The outcome of reading a spec: warnings never stop a deploy, errors always do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    pub errors: Vec<SpecError>,
    pub warnings: Vec<SpecError>,
}

impl Findings {
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
    pub fn extend(&mut self, other: Findings) {
        self.errors.extend(other.errors);
        self.warnings.extend(other.warnings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_line_key_and_fix() {
        let e = SpecError::new(
            "compose/api/compose.yaml",
            "not supported (one container per service)",
        )
        .at_line(Some(14))
        .key("services.api.deploy.replicas")
        .fix("remove it");
        assert_eq!(
            e.to_string(),
            "compose/api/compose.yaml:14: services.api.deploy.replicas: not supported (one container per service); remove it"
        );
        assert_eq!(
            SpecError::new("f", "m").at_line(Some(0)).to_string(),
            "f: m"
        );
    }
}

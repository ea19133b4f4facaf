//! Rule matching: methods, headers, `{param}` segments, a path prefix at a
//! `/` boundary; the most specific rule wins.

/// Placeholder until the matcher lands.
#[derive(Debug, Default)]
pub struct Router {}

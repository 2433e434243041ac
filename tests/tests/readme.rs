//! The README's tables of environment variables and of key template variables are generated
//! from the registries in `core/src/env_vars.rs` and `core/src/ci.rs`; this keeps them in
//! step. Run with `FERRY_UPDATE_README=1` to rewrite the tables.

use ferry_core::ci::{Provider, Source, VARIABLES};
use ferry_core::env_vars::ALL;

fn env_table() -> String {
    let mut t = String::from("| variable | meaning |\n|---|---|\n");
    for v in ALL {
        t.push_str(&format!("| `{}` | {} |\n", v.name, v.doc.trim()));
    }
    t
}

fn template_table() -> String {
    let providers = [
        Provider::GithubActions,
        Provider::Circleci,
        Provider::Drone,
        Provider::Local,
    ];
    let mut t = String::from("| variable |");
    for p in providers {
        t.push_str(&format!(
            " {} |",
            if p == Provider::Local {
                "local"
            } else {
                p.label()
            }
        ));
    }
    t.push_str("\n|---|---|---|---|---|\n");
    for v in VARIABLES {
        let names: Vec<String> = v.names.iter().map(|n| format!("`.{n}`")).collect();
        t.push_str(&format!("| {} |", names.join(", ")));
        for p in providers {
            let cell = match v.source(p) {
                Source::Env(name) => format!("`{name}`"),
                Source::Derived(how) => how.to_string(),
                Source::Absent => "—".to_string(),
            };
            t.push_str(&format!(" {cell} |"));
        }
        t.push('\n');
    }
    t
}

/// Checks (or, with `FERRY_UPDATE_README`, rewrites) the text between `<!-- NAME -->` and
/// `<!-- /NAME -->`.
fn keep_in_step(marker: &str, expected: &str) {
    let path = ferry_tests::repo_root().join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let (start, end) = (
        format!("<!-- {marker} -->\n"),
        format!("<!-- /{marker} -->"),
    );
    let a = readme
        .find(&start)
        .unwrap_or_else(|| panic!("README has no {start}"))
        + start.len();
    let b = readme
        .find(&end)
        .unwrap_or_else(|| panic!("README has no {end}"));
    if readme[a..b] != *expected {
        if std::env::var_os("FERRY_UPDATE_README").is_some() {
            let updated = format!("{}{}{}", &readme[..a], expected, &readme[b..]);
            std::fs::write(&path, updated).expect("write README.md");
        } else {
            panic!(
                "README's {marker} table is stale; run FERRY_UPDATE_README=1 cargo test -p ferry-tests --test readme"
            );
        }
    }
}

#[test]
fn readme_lists_every_environment_variable_ferry_reads() {
    keep_in_step("env-vars", &env_table());
}

#[test]
fn readme_lists_every_key_template_variable_and_where_each_ci_sets_it() {
    keep_in_step("template-vars", &template_table());
}

//! The README's table of environment variables is generated from the registry in
//! `core/src/env_vars.rs`; this keeps the two in step. Run with `FERRY_UPDATE_README=1` to
//! rewrite the table.

use ferry_core::env_vars::ALL;

fn table() -> String {
    let mut t = String::from("| variable | meaning |\n|---|---|\n");
    for v in ALL {
        t.push_str(&format!("| `{}` | {} |\n", v.name, v.doc.trim()));
    }
    t
}

#[test]
fn readme_lists_every_environment_variable_ferry_reads() {
    let path = ferry_tests::repo_root().join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let (start, end) = ("<!-- env-vars -->\n", "<!-- /env-vars -->");
    let a = readme.find(start).expect("README has the env-vars marker") + start.len();
    let b = readme
        .find(end)
        .expect("README has the closing env-vars marker");
    let expected = table();
    if readme[a..b] != expected {
        if std::env::var_os("FERRY_UPDATE_README").is_some() {
            let updated = format!("{}{}{}", &readme[..a], expected, &readme[b..]);
            std::fs::write(&path, updated).expect("write README.md");
        } else {
            panic!(
                "README's environment variable table is stale; run FERRY_UPDATE_README=1 cargo test -p ferry-tests --test readme"
            );
        }
    }
}

//! Builds the binding of one host server: raw bindings from the host's
//! headers, and the small C shim, both compiled with exactly the defines the
//! host was built with. A layout built from other defines is a crash, so any
//! doubt fails the build with a message that names what to set.
//!
//! The `kamailio` feature (the default) builds the Kamailio module; the
//! `opensips` feature, without the default ones, builds the OpenSIPS one.

mod kamailio;
mod opensips;

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed=wrapper");
    declare_test_trees();
    let kamailio = env::var_os("CARGO_FEATURE_KAMAILIO").is_some();
    let opensips = env::var_os("CARGO_FEATURE_OPENSIPS").is_some();
    match (kamailio, opensips) {
        (true, true) => fail(
            "the kamailio and opensips features build different modules; build OpenSIPS's with \
             `--no-default-features --features opensips`",
        ),
        (true, false) => kamailio::build(),
        (false, true) => opensips::build(),
        // The unit tests of the host-agnostic core need no host at all.
        (false, false) => {}
    }
}

/// Tells the integration tests which optional server trees they can run
/// against: without one, tests/opensips.rs marks its tests ignored, so the
/// runner counts them as not run instead of passed. With one, its release's
/// cfg (`opensips_3_6`, `opensips_4_0`) selects the tests of that release;
/// the OpenSIPS binding's own build emits the same one.
fn declare_test_trees() {
    println!("cargo:rustc-check-cfg=cfg(opensips_tree)");
    for release in opensips::SUPPORTED {
        println!("cargo:rustc-check-cfg=cfg({})", release.cfg);
    }
    // The Kamailio release cfgs are set only when the Kamailio binding is
    // built, but tests/common names them in every build.
    for cfg in kamailio::release_cfgs() {
        println!("cargo:rustc-check-cfg=cfg({cfg})");
    }
    println!("cargo:rerun-if-env-changed=OPENSIPS_SRC");
    let Some(tree) = env::var_os("OPENSIPS_SRC").map(PathBuf::from) else { return };
    if tree.join("opensips").is_file() {
        println!("cargo:rustc-cfg=opensips_tree");
    }
    if let Some(release) = opensips::release_of(&tree) {
        println!("cargo:rustc-cfg={}", release.cfg);
    }
}

pub fn fail(message: &str) -> ! {
    eprintln!("\nerror: {message}\n");
    panic!("siptrace-rs build failed: {message}");
}

/// Splits make's output into words. The string defines are printed without
/// shell quoting (`-DCOMPILER="gcc 12.2.0"`): the double quotes belong to the
/// value and a space inside them does not split the word.
pub fn split_shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                word.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Concatenates the string literals that follow `marker` in preprocessed C,
/// up to the next `;`.
pub fn expanded_string(expanded: &str, marker: &str) -> String {
    let start = expanded.find(marker).unwrap_or_else(|| fail(&format!("preprocessor output lacks {marker}")))
        + marker.len();
    let rest = &expanded[start..];
    let rest = &rest[..rest.find(';').unwrap_or(rest.len())];
    let mut value = String::new();
    let mut in_literal = false;
    let mut escaped = false;
    for c in rest.chars() {
        if in_literal {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => in_literal = false,
                (_, c) => {
                    value.push(c);
                    escaped = false;
                }
            }
        } else if c == '"' {
            in_literal = true;
        }
    }
    value
}

/// A C build with the host's include directories and defines, for the shim
/// and for expanding the host's macros.
pub fn cc_build(include_dirs: &[PathBuf], defines: &[String]) -> cc::Build {
    let mut build = cc::Build::new();
    for dir in include_dirs {
        build.include(dir);
    }
    for define in defines {
        build.flag(define);
    }
    build.flag("-pthread").flag("-fPIC").warnings(false);
    build
}

/// The part of a host's API a binding uses, for bindgen's allowlists.
pub struct Api {
    pub functions: &'static [&'static str],
    pub types: &'static [&'static str],
    pub vars: &'static [&'static str],
}

/// Runs bindgen over `header` with the host's include directories and
/// defines, into OUT_DIR/bindings.rs, with wrappers for the allowlisted
/// static inline functions in OUT_DIR/static_fns.c.
pub fn generate_bindings(header: &str, include_dirs: &[PathBuf], defines: &[String], api: &Api) {
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let mut builder = bindgen::Builder::default()
        .header(header)
        .clang_args(include_dirs.iter().map(|d| format!("-I{}", d.display())))
        .clang_args(defines)
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .wrap_static_fns(true)
        .wrap_static_fns_path(out_dir.join("static_fns"))
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for function in api.functions {
        builder = builder.allowlist_function(function);
    }
    for ty in api.types {
        builder = builder.allowlist_type(ty);
    }
    for var in api.vars {
        builder = builder.allowlist_var(var);
    }
    let bindings = builder.generate().unwrap_or_else(|e| fail(&format!("bindgen over {header} failed: {e}")));
    bindings.write_to_file(out_dir.join("bindings.rs")).unwrap();
}

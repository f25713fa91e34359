//! The OpenSIPS binding's build. OpenSIPS is not packaged by Debian: the
//! user builds it from source, and OPENSIPS_SRC names that built tree. The
//! defines come from the tree's own Makefile.conf and Makefile.defs, and
//! the module strings OpenSIPS compares at load time are checked against
//! what the tree's `opensips -V` prints.
//!
//! The release is read from the tree (its Makefile.defs) and becomes a cfg
//! (`opensips_3_6`, `opensips_4_0`) that the host layer selects its
//! version-specific code with; the tests see it too (`main.rs`). A release
//! not listed in `SUPPORTED` is refused.

use crate::{expanded_string, fail, split_shell_words};
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn build() {
    for var in ["OPENSIPS_SRC", "OPENSIPS_BIN"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let host = OpenSipsHost::discover();
    let release = release_of(&host.src);
    if release.is_none() {
        fail(&format!(
            "OPENSIPS_SRC={} is OpenSIPS {}, which is not supported; the supported releases are {}",
            host.src.display(),
            tree_version(&host.src).unwrap_or_else(|| "of an unknown version".into()),
            supported_names()
        ));
    }
    host.check_module_strings();
    host.generate_bindings();
    host.compile_shim();
}

/// An OpenSIPS release this module is built and tested for.
pub struct Release {
    /// `major.minor`.
    pub name: &'static str,
    /// The cfg the host layer (and the tests) select this release's code with.
    pub cfg: &'static str,
}

pub const SUPPORTED: &[Release] =
    &[Release { name: "3.6", cfg: "opensips_3_6" }, Release { name: "4.0", cfg: "opensips_4_0" }];

fn supported_names() -> String {
    SUPPORTED.iter().map(|r| r.name).collect::<Vec<_>>().join(" and ")
}

/// The version of an OpenSIPS tree, `major.minor.sub`, from its
/// Makefile.defs; `None` when it has none.
pub fn tree_version(src: &Path) -> Option<String> {
    let defs = std::fs::read_to_string(src.join("Makefile.defs")).ok()?;
    let field = |name: &str| -> Option<String> {
        defs.lines().find_map(|l| {
            let (key, value) = l.split_once('=')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
    };
    Some(format!("{}.{}.{}", field("VERSION_MAJOR")?, field("VERSION_MINOR")?, field("VERSION_SUBMINOR")?))
}

/// The supported release of the tree `src`, if it is one.
pub fn release_of(src: &Path) -> Option<&'static Release> {
    let version = tree_version(src)?;
    let major_minor = version.split('.').take(2).collect::<Vec<_>>().join(".");
    SUPPORTED.iter().find(|r| r.name == major_minor)
}

struct OpenSipsHost {
    src: PathBuf,
    bin: PathBuf,
    defines: Vec<String>,
}

/// What `opensips -V` says the server is.
struct Reported {
    version: String,
    flags: String,
    scm_type: String,
    revision: String,
}

impl OpenSipsHost {
    fn discover() -> Self {
        let Some(src) = env::var_os("OPENSIPS_SRC").map(PathBuf::from) else {
            fail(
                "OPENSIPS_SRC is not set. Point it at the OpenSIPS 3.6 or 4.0 source tree you \
                 built (`make` in it), whose opensips binary is to load the module.",
            )
        };
        let src = src.canonicalize().unwrap_or(src);
        for file in ["Makefile.defs", "Makefile.conf", "sr_module.h"] {
            if !src.join(file).is_file() {
                fail(&format!(
                    "OPENSIPS_SRC={} does not look like a built OpenSIPS tree ({file} is missing; \
                     `make` creates Makefile.conf)",
                    src.display()
                ));
            }
        }
        let bin = env::var_os("OPENSIPS_BIN").map(PathBuf::from).unwrap_or_else(|| src.join("opensips"));
        let mut defines = build_file_defines(&src);
        // What Makefile.modules adds for a module named tracer.
        defines.extend(["-DMOD_NAME=tracer".to_string(), "-DPIC".to_string()]);
        OpenSipsHost { src, bin, defines }
    }

    fn include_dirs(&self) -> Vec<PathBuf> {
        vec![self.src.clone(), PathBuf::from("wrapper/opensips")]
    }

    fn cc_build(&self) -> cc::Build {
        crate::cc_build(&self.include_dirs(), &self.defines)
    }

    fn reported(&self) -> Reported {
        let out = Command::new(&self.bin).arg("-V").output().unwrap_or_else(|e| {
            fail(&format!(
                "cannot run `{} -V` ({e}); build the tree, or set OPENSIPS_BIN to the binary",
                self.bin.display()
            ))
        });
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let field = |prefix: &str| -> String {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| fail(&format!("`{} -V` printed no '{prefix}' line", self.bin.display())))
        };
        // "git revision: e6c1a35a34": the scm type, then the revision.
        let (scm_type, revision) = text
            .lines()
            .find_map(|l| l.split_once(" revision: "))
            .map(|(t, r)| (t.trim().to_string(), r.trim().to_string()))
            .unwrap_or_else(|| fail(&format!("`{} -V` printed no revision line", self.bin.display())));
        Reported { version: field("version:"), flags: field("flags:"), scm_type, revision }
    }

    /// OpenSIPS refuses a module whose version, compile flags or scm type
    /// differ from its own (and whose revision is not a prefix of its own).
    fn check_module_strings(&self) {
        let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
        let probe = out_dir.join("opensips_module_strings.c");
        std::fs::write(
            &probe,
            "#include \"version.h\"\n\
             siptrace_version_is OPENSIPS_FULL_VERSION ;\n\
             siptrace_flags_are OPENSIPS_COMPILE_FLAGS ;\n\
             siptrace_scm_is VERSIONTYPE ;\n\
             siptrace_revision_is THISREVISION ;\n",
        )
        .unwrap();
        let expanded = self.cc_build().file(&probe).expand();
        let expanded = String::from_utf8_lossy(&expanded);
        let ours = Reported {
            version: expanded_string(&expanded, "siptrace_version_is"),
            flags: expanded_string(&expanded, "siptrace_flags_are"),
            scm_type: expanded_string(&expanded, "siptrace_scm_is"),
            revision: expanded_string(&expanded, "siptrace_revision_is"),
        };
        let theirs = self.reported();
        for (what, ours, theirs) in [
            ("version", &ours.version, &theirs.version),
            ("compile flags", &ours.flags, &theirs.flags),
            ("scm type", &ours.scm_type, &theirs.scm_type),
            ("revision", &ours.revision, &theirs.revision),
        ] {
            if ours.trim() != theirs.trim() {
                fail(&format!(
                    "the module's {what} would be '{ours}' but `{} -V` reports '{theirs}', and \
                     OpenSIPS would refuse to load it. OPENSIPS_SRC must be the tree that binary \
                     was built from (set OPENSIPS_BIN if another binary is meant).",
                    self.bin.display()
                ));
            }
        }
    }

    fn generate_bindings(&self) {
        let api = crate::Api { functions: API_FUNCTIONS, types: API_TYPES, vars: API_VARS };
        crate::generate_bindings("wrapper/opensips/wrapper.h", &self.include_dirs(), &self.defines, &api);
    }

    fn compile_shim(&self) {
        let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
        let mut build = self.cc_build();
        build.file("wrapper/opensips/shim.c").include(env::current_dir().unwrap());
        // bindgen writes wrappers only when an allowlisted function is inline.
        let static_fns = out_dir.join("static_fns.c");
        if static_fns.exists() {
            build.file(static_fns);
        }
        build.compile("siptrace_shim");
    }
}

/// The part of OpenSIPS's API the binding uses.
const API_FUNCTIONS: &[&str] = &[
    "siptrace_os_.*",
    "trace_prot_bind",
    "register_stat2",
    "find_export",
    "register_slcb",
    "find_param_export",
    "__register_script_cb",
    "init_mi_result_object",
    "init_mi_result_string",
    "init_mi_error_extra",
    "add_mi_string",
    "add_mi_array",
    "add_mi_object",
    "try_get_mi_string_param",
    "try_get_mi_array_param",
    "try_get_mi_arr_param_string",
    "is_dummy_sip_msg",
    "db_bind_mod",
    "db_check_table_version",
    "alloc_module_dep",
    "tcp_get_correlation_id",
    // OpenSIPS 4.0 only.
    "tcp_get_rcv",
];
const API_TYPES: &[&str] = &[
    "module_exports",
    "cmd_export_t",
    "param_export_t",
    "proc_export_t",
    "stat_export_t",
    "dep_export_t",
    "sip_msg",
    "trace_proto_t",
    "hid_list_t",
    "module_type",
    "stat_var",
    "scm_version",
    "sip_protos",
    "tm_binds",
    "load_tm_f",
    "tmcb_params",
    "dest_info",
    "socket_info",
    "sl_cb_type",
    "sl_cb_t",
    "modify_trace",
    "mi_export_t",
    "mi_recipe_t",
    "mi_params_t",
    "dlg_binds",
    "load_dlg_f",
    "dlg_cb_params",
    "b2bl_api",
    "tls_mgm_binds",
    "load_tls_mgm_f",
    "tls_domain",
    "b2b_tracer",
    "load_b2bl_f",
    "db_func_t",
    "db_con_t",
    "db_key_t",
    "db_val_t",
    "db_type_t",
    "module_dependency_t",
    "modparam_dependency_t",
];
const API_VARS: &[&str] = &[
    "siptrace_os_.*",
    "STR_PARAM",
    "INT_PARAM",
    "CMD_PARAM_.*",
    "REQUEST_ROUTE",
    "FAILURE_ROUTE",
    "ONREPLY_ROUTE",
    "BRANCH_ROUTE",
    "LOCAL_ROUTE",
    "STAT_.*",
    "PROTO_.*",
    "L_(ALERT|CRIT|ERR|WARN|NOTICE|INFO|DBG)",
    "PROC_.*",
    "TMCB_MSG_(MATCHED_IN|SENT_OUT)",
    "TMCB_TRANS_CANCELLED",
    "DLGCB_(REQ_WITHIN|TERMINATED)",
    "FL_USE_SIPTRACE",
    "FL_USE_SIPTRACE_B2B",
    "T_IS_LOCAL_FLAG",
    "DOM_FLAG_DB",
    "SIP_REQUEST",
    "DEP_ABORT",
    "MAX_MOD_DEPS",
    "global_trace_api",
    "register_trace_type",
    "check_is_traced",
    "sip_context_trace",
    "get_next_destination",
    "PRE_SCRIPT_CB",
    "REQ_TYPE_CB",
    "RPL_TYPE_CB",
    "SCB_RUN_ALL",
    "MI_NAMED_PARAMS_ONLY",
    "MAX_MI_RECIPES",
    "MAX_MI_PARAMS",
    "MAX_MI_ALIASES",
    "last_outgoing_tcp_id",
];

/// The `-D` defines OpenSIPS's build gives its modules: its Makefile
/// includes Makefile.conf, then Makefile.defs, which computes DEFS.
fn build_file_defines(src: &Path) -> Vec<String> {
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let printer = out_dir.join("print-defs.mk");
    std::fs::write(&printer, "include Makefile.conf\ninclude Makefile.defs\nprint-defs:\n\t@echo $(DEFS)\n")
        .unwrap();
    let out = Command::new("make")
        .args(["-s", "-f"])
        .arg(&printer)
        .arg("print-defs")
        .current_dir(src)
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run make in {}: {e}", src.display())));
    if !out.status.success() {
        fail(&format!(
            "reading DEFS from Makefile.conf and Makefile.defs failed in {}: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let defines: Vec<String> = split_shell_words(&String::from_utf8_lossy(&out.stdout))
        .into_iter()
        .filter(|w| w.starts_with("-D"))
        .collect();
    if defines.is_empty() {
        fail(&format!("Makefile.defs in {} gave no defines", src.display()));
    }
    defines
}

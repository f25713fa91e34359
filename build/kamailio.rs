//! The Kamailio binding's build: KAMAILIO_SRC's headers, the defines of
//! `make printcdefs`, and the strings `kamailio -V` prints.
//!
//! One release at a time, read from the tree: `KAMAILIO_VERSION=6.0`
//! builds for the 6.0 server scripts/setup-debian.sh builds under
//! .deps/kamailio-6.0, and without it the build is for Debian's installed
//! 5.6. KAMAILIO_SRC and KAMAILIO_BIN point at another tree and binary.
//! The release becomes a cfg (`kamailio_5_6`, `kamailio_6_0`) that the
//! host layer, and the tests, select their version-specific code with.

use crate::{expanded_string, fail, split_shell_words};
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn build() {
    for var in ["KAMAILIO_VERSION", "KAMAILIO_SRC", "KAMAILIO_BIN", "KAMAILIO_LIB_DIR"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let host = KamailioHost::discover();
    println!("cargo:rustc-cfg={}", host.release.cfg);
    host.check_module_strings();
    host.generate_bindings();
    host.compile_shim();
    if host.release.has_srdb1_library {
        host.link_srdb1();
    }
}

/// A Kamailio release this module is built and tested for.
struct Release {
    /// `major.minor`, as KAMAILIO_VERSION gives it.
    name: &'static str,
    /// The cfg the host layer selects this release's code with.
    cfg: &'static str,
    /// Where scripts/setup-debian.sh leaves its source tree and binary,
    /// relative to the crate; the binary is the installed one without.
    src: &'static str,
    bin: Option<&'static str>,
    /// 5.6 keeps the DB API in libsrdb1.so; from 6.0 it is in the
    /// kamailio binary, which exports db_bind_mod itself.
    has_srdb1_library: bool,
}

const SUPPORTED: &[Release] = &[
    Release {
        name: "5.6",
        cfg: "kamailio_5_6",
        src: ".deps/kamailio-5.6.3",
        bin: None,
        has_srdb1_library: true,
    },
    Release {
        name: "6.0",
        cfg: "kamailio_6_0",
        src: ".deps/kamailio-6.0/src-tree",
        bin: Some(".deps/kamailio-6.0/sbin/kamailio"),
        has_srdb1_library: false,
    },
];

/// The cfg of each supported release.
pub fn release_cfgs() -> impl Iterator<Item = &'static str> {
    SUPPORTED.iter().map(|r| r.cfg)
}

fn supported_names() -> String {
    SUPPORTED.iter().map(|r| r.name).collect::<Vec<_>>().join(" and ")
}

fn release_named(name: &str) -> &'static Release {
    SUPPORTED.iter().find(|r| r.name == name).unwrap_or_else(|| {
        fail(&format!("Kamailio {name} is not supported; the supported releases are {}", supported_names()))
    })
}

struct KamailioHost {
    src: PathBuf,
    release: &'static Release,
    bin: String,
    defines: Vec<String>,
    version_line: String,
    flags_line: String,
}

impl KamailioHost {
    fn discover() -> Self {
        let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
        let asked = env::var("KAMAILIO_VERSION").ok().filter(|v| !v.is_empty());
        // "6.0" and "6.0.1" both ask for the 6.0 release.
        let asked = asked.as_deref().map(|v| release_named(&major_minor(v)));
        let default = asked.unwrap_or(&SUPPORTED[0]);
        let src = env::var_os("KAMAILIO_SRC").map_or_else(|| manifest.join(default.src), PathBuf::from);
        let src = src.canonicalize().unwrap_or(src);
        if !src.join("src/Makefile.defs").is_file() {
            fail(&format!(
                "{} does not look like a Kamailio source tree (src/Makefile.defs is missing). \
                 Run `{}scripts/setup-debian.sh`, or set KAMAILIO_SRC to the source tree of \
                 your Kamailio.",
                src.display(),
                asked.map_or(String::new(), |r| format!("KAMAILIO_VERSION={} ", r.name)),
            ));
        }
        let tree_version = tree_version(&src.join("src"));
        let release = release_named(&major_minor(&tree_version));
        if let Some(asked) = asked {
            if asked.name != release.name {
                fail(&format!(
                    "KAMAILIO_VERSION={} but the tree {} is Kamailio {tree_version}",
                    asked.name,
                    src.display()
                ));
            }
        }
        let bin =
            env::var("KAMAILIO_BIN").ok().filter(|b| !b.is_empty()).unwrap_or_else(|| match release.bin {
                Some(bin) if env::var_os("KAMAILIO_SRC").is_none() => {
                    manifest.join(bin).display().to_string()
                }
                _ => installed_binary(),
            });
        let mut defines = build_file_defines(&src.join("src"));
        defines.push("-DMOD_NAME=\"siptrace\"".to_string());
        let (version_line, flags_line) = binary_version(&bin);
        KamailioHost { src, release, bin, defines, version_line, flags_line }
    }

    fn include_dirs(&self) -> Vec<PathBuf> {
        vec![self.src.join("src"), PathBuf::from("wrapper/kamailio")]
    }

    fn cc_build(&self) -> cc::Build {
        crate::cc_build(&self.include_dirs(), &self.defines)
    }

    /// Kamailio refuses a module whose `module_version` or `module_flags`
    /// string differs from its own. Expand the host's macros with our defines
    /// and compare them with what the installed binary prints.
    fn check_module_strings(&self) {
        let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
        let probe = out_dir.join("module_strings.c");
        std::fs::write(
            &probe,
            "#include \"core/ver_defs.h\"\n\
             siptrace_version_is SER_FULL_VERSION ;\n\
             siptrace_flags_are SER_COMPILE_FLAGS ;\n",
        )
        .unwrap();
        let expanded = self.cc_build().file(&probe).expand();
        let expanded = String::from_utf8_lossy(&expanded);
        let version = expanded_string(&expanded, "siptrace_version_is");
        let flags = expanded_string(&expanded, "siptrace_flags_are");

        if version.trim() != self.version_line {
            fail(&format!(
                "module_version would be '{version}' (from the tree {}) but {} reports \
                 '{}'. KAMAILIO_SRC must be the source of that binary's version \
                 (set KAMAILIO_BIN if another kamailio binary is meant).",
                self.src.display(),
                self.bin,
                self.version_line
            ));
        }
        if flags.trim() != self.flags_line {
            let ours: Vec<&str> = flags.split(", ").map(str::trim).collect();
            let theirs: Vec<&str> = self.flags_line.split(", ").map(str::trim).collect();
            let missing: Vec<&&str> = theirs.iter().filter(|f| !ours.contains(f)).collect();
            let extra: Vec<&&str> = ours.iter().filter(|f| !theirs.contains(f)).collect();
            fail(&format!(
                "module_flags would differ from {}'s, and it would \
                 refuse to load the module.\n  ours:   {flags}\n  kamailio -V: {}\n  \
                 missing: {missing:?}  extra: {extra:?}\n\
                 The defines come from `make printcdefs` in KAMAILIO_SRC/src; \
                 TLS_PTHREAD_MUTEX_SHARED needs libssl-dev installed.",
                self.bin, self.flags_line
            ));
        }
    }

    fn generate_bindings(&self) {
        let api = crate::Api { functions: API_FUNCTIONS, types: API_TYPES, vars: API_VARS };
        crate::generate_bindings("wrapper/kamailio/wrapper.h", &self.include_dirs(), &self.defines, &api);
    }

    fn compile_shim(&self) {
        let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
        let static_fns = out_dir.join("static_fns.c");
        self.cc_build()
            .files(SHIM_FILES)
            .file(&static_fns)
            .include(env::current_dir().unwrap())
            .compile("siptrace_shim");
    }

    /// The DB API (`db_bind_mod`, `db_check_table_version`) lives in
    /// libsrdb1, which Kamailio ships beside its modules.
    fn link_srdb1(&self) {
        let dir = match env::var_os("KAMAILIO_LIB_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => LIB_DIR_CANDIDATES
                .iter()
                .map(PathBuf::from)
                .find(|d| d.join("libsrdb1.so").exists())
                .unwrap_or_else(|| {
                    fail(
                        "libsrdb1.so was not found in the usual places; set KAMAILIO_LIB_DIR \
                         to the directory that holds Kamailio's libsrdb1.so",
                    )
                }),
        };
        // Only the module links it; the core's unit tests must not.
        println!("cargo:rustc-cdylib-link-arg=-L{}", dir.display());
        println!("cargo:rustc-cdylib-link-arg=-Wl,--no-as-needed,-lsrdb1");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-rpath,{}", dir.display());
    }
}

/// The C shim, one file per concern; each says why it must be C.
const SHIM_FILES: &[&str] =
    &["wrapper/kamailio/macros.c", "wrapper/kamailio/log_hook.c", "wrapper/kamailio/rpc_interpose.c"];

/// The part of Kamailio's API the binding uses. Keeping bindgen to it keeps
/// the generated wrappers of static inline functions (get_send_socket) to
/// what is called, so the module references no symbol it does not need.
const API_FUNCTIONS: &[&str] = &[
    "siptrace_shim_.*",
    "sr_event_register_cb",
    "fixup_spve_all",
    "fixup_free_spve_all",
    "get_str_fparam",
    "route_lookup",
    "register_stat",
    "db_bind_mod",
    "db_check_table_version",
    "get_send_socket",
    "fork_process",
    "register_procs",
    "cfg_register_child",
    "cfg_child_init",
    "load_tm_api",
    "sl_load_api",
    "load_dlg_api",
    "register_script_cb",
    "ksr_get_socket_by_name",
    "grep_sock_info",
    "sr_kemi_modules_add",
    "parse_msg",
    "sr_kemi_eng_get",
    "sr_kemi_route",
    "sr_kemi_act_ctx_get",
    "sr_kemi_act_ctx_set",
    "free_sip_msg",
    "run_top_route",
    "pv_get_null",
    "pv_get_strval",
    "pv_get_sintval",
    "pv_get_strintval",
    "pv_parse_spec2",
    "pv_get_avp_name",
    "search_first_avp",
    "search_next_avp",
    "find_export",
    "tcpconn_get",
    "pv_cache_get",
    // 6.0's setter of the structured-log function (absent in 5.6).
    "km_slog_func_set",
];
const API_TYPES: &[&str] = &[
    "module_exports",
    "cmd_export_t",
    "param_export_t",
    "rpc_export_t",
    "rpc_t",
    "sip_msg",
    "sr_net_info_t",
    "sr_event_param_t",
    "onsend_info_t",
    "fparam_t",
    "sip_protos",
    "db_func_t",
    "db_key_t",
    "db_val_t",
    "db1_res_t",
    "db_locking_t",
    "db_type_t",
    "db_cap",
    "counter_val_t",
    "stat_var",
    "tm_binds",
    "tmcb_params",
    "cell",
    "sl_api_t",
    "sl_cbelem_t",
    "sl_cbp_t",
    "request_method",
    "pv_spec_t",
    "pv_type",
    "usr_avp",
    "search_state",
    "int_str",
    "dlg_binds",
    "dlg_cb_params",
    "script_cb_flag",
    "sr_kemi_t",
    "pv_export_t",
    "run_act_ctx_t",
    "pv_param_t",
    "pv_value_t",
    "httpc_api_t",
    "bind_httpc_api_f",
    "tcp_connection",
    "tcp_closed_event_info_t",
    "jsonrpc_ctx_t",
    "process_table",
];
const API_VARS: &[&str] = &[
    "siptrace_shim_.*",
    "p_onsend",
    "event_rt",
    "DEFAULT_DB_URL",
    "version_table",
    "MODULE_INTERFACE_VER",
    "ANY_ROUTE",
    "PARAM_(INT|STR)",
    "STAT_(IS_FUNC|NO_RESET)",
    "SREV_NET_DATA_(RECV|SENT)",
    "PROC_(INIT|MAIN|TCP_MAIN|NOCHLDINIT)",
    "L_(ERR|WARN|INFO|DBG)",
    "TMCB_(REQUEST_IN|REQUEST_SENT|RESPONSE_IN|RESPONSE_SENT|RESPONSE_READY|ACK_NEG_IN|E2ECANCEL_IN|ON_FAILURE|RETR_F)",
    "SLCB_(REPLY_READY|ACK_FILTERED)",
    "FL_SIPTRACE",
    "T_IS_INVITE_FLAG",
    "T_BR_UNDEFINED",
    "SIP_(REQUEST|REPLY)",
    "AVP_VAL_STR",
    "DLGCB_(CREATED|CONFIRMED|REQ_WITHIN|TERMINATED|SPIRALED)",
    "POST_SCRIPT_CB",
    "PRE_SCRIPT_CB",
    "SR_KEMIP_(NONE|INT|STR)",
    "SR_KEMI_PARAMS_MAX",
    "route_type",
    "EVENT_ROUTE",
    "DROP_R_F",
    "PV_NAME_INTSTR",
    "PV_VAL_STR",
    "EQ_T",
    "SREV_TCP_CLOSED",
    "F_CONN_PASSIVE",
    "TCP_CLOSED_(EOF|TIMEOUT|RESET)",
    "rpc_sarray",
    "rpc_sarray_crt_size",
    "pt",
    "process_no",
    "JSONRPC_TRANS_HTTP",
    "_ksr_slog_func",
];

const LIB_DIR_CANDIDATES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/kamailio",
    "/usr/lib/aarch64-linux-gnu/kamailio",
    "/usr/lib64/kamailio",
    "/usr/lib/kamailio",
    "/usr/local/lib64/kamailio",
    "/usr/local/lib/kamailio",
];

/// The `-D` defines Kamailio's own build files give its modules: the
/// `printcdefs` target, plus the pthread mutex option that Makefile.defs adds
/// to CFLAGS when libssl is new enough.
fn build_file_defines(src: &Path) -> Vec<String> {
    let make = |args: &[&str]| -> String {
        let out = Command::new("make")
            .args(args)
            .current_dir(src)
            .output()
            .unwrap_or_else(|e| fail(&format!("cannot run make in {}: {e}", src.display())));
        if !out.status.success() {
            fail(&format!(
                "`make {}` failed in {}: {}",
                args.join(" "),
                src.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut defines: Vec<String> =
        split_shell_words(&make(&["-s", "printcdefs"])).into_iter().filter(|w| w.starts_with("-D")).collect();
    let pmutex = make(&["-s", "printvar", "v=CC_PMUTEX_OPTS"]);
    defines.extend(split_shell_words(&pmutex).into_iter().filter(|w| w.starts_with("-D")));
    if defines.is_empty() {
        fail(&format!("`make printcdefs` in {} printed no defines", src.display()));
    }
    defines
}

fn major_minor(version: &str) -> String {
    version.split('.').take(2).collect::<Vec<_>>().join(".")
}

/// The version of a source tree, `major.minor.sub`, from its Makefile.defs.
fn tree_version(src: &Path) -> String {
    let defs = std::fs::read_to_string(src.join("Makefile.defs"))
        .unwrap_or_else(|e| fail(&format!("cannot read {}/Makefile.defs: {e}", src.display())));
    let field = |name: &str| -> String {
        defs.lines()
            .find_map(|l| {
                let (key, value) = l.split_once('=')?;
                (key.trim() == name).then(|| value.trim().to_string())
            })
            .unwrap_or_else(|| fail(&format!("{}/Makefile.defs has no {name} line", src.display())))
    };
    format!("{}.{}.{}", field("VERSION"), field("PATCHLEVEL"), field("SUBLEVEL"))
}

/// The kamailio binary installed on this machine.
fn installed_binary() -> String {
    ["/usr/sbin/kamailio", "/usr/local/sbin/kamailio"]
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| p.to_string())
        .unwrap_or_else(|| "kamailio".to_string())
}

/// The "Version:" and "flags:" lines of `bin -V`.
fn binary_version(bin: &str) -> (String, String) {
    let out = Command::new(bin).arg("-V").output().unwrap_or_else(|e| {
        fail(&format!("cannot run `{bin} -V` ({e}); install Kamailio or set KAMAILIO_BIN to its binary"))
    });
    // Some builds print the version to stderr.
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let field = |prefix: &str| -> String {
        text.lines()
            .find(|l| l.len() >= prefix.len() && l[..prefix.len()].eq_ignore_ascii_case(prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
            .unwrap_or_else(|| fail(&format!("`{bin} -V` printed no '{prefix}' line")))
    };
    (field("Version:"), field("flags:"))
}

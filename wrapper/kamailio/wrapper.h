/* The parts of Kamailio's API that the Rust binding uses. bindgen reads this
 * file with the installed server's defines; see build.rs. */
#ifndef SIPTRACE_WRAPPER_H
#define SIPTRACE_WRAPPER_H

#include "core/sr_module.h"
#include "core/mod_fix.h"
#include "core/dprint.h"
#include "core/mem/mem.h"
#include "core/mem/shm_mem.h"
#include "core/rpc.h"
#include "core/rpc_lookup.h"
#include "core/events.h"
#include "core/onsend.h"
#include "core/ip_addr.h"
#include "core/forward.h"
#include "core/route.h"
#include "core/pvar.h"
#include "core/usr_avp.h"
#include "core/counters.h"
#include "core/socket_info.h"
#include "core/parser/msg_parser.h"
#include "core/pt.h"
#include "core/cfg/cfg_struct.h"
#include "lib/srdb1/db.h"
#include "modules/tm/tm_load.h"
#include "modules/sl/sl.h"
#include "modules/dialog/dlg_load.h"
#include "core/script_cb.h"
#include "core/kemi.h"
#include "core/tcp_conn.h"
#include "core/lvalue.h"
#include "modules/http_client/curl_api.h"
#include "modules/jsonrpcs/jsonrpcs_mod.h"

#include "macros.h"
#include "log_hook.h"
#include "rpc_interpose.h"

#endif

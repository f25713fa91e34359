/* The parts of OpenSIPS's API that the Rust binding uses. bindgen reads this
 * file with the defines of the OpenSIPS tree in OPENSIPS_SRC; see
 * build/opensips.rs. */
#ifndef SIPTRACE_OS_WRAPPER_H
#define SIPTRACE_OS_WRAPPER_H

#include "net/net_tcp.h"
#include "sr_module.h"
#include "statistics.h"
#include "dprint.h"
#include "trace_api.h"
#include "route.h"
#include "pt.h"
#include "parser/msg_parser.h"
#include "socket_info.h"
#include "sl_cb.h"
#include "modules/tm/tm_load.h"
#include "modules/dialog/dlg_load.h"
#include "modules/b2b_logic/b2b_load.h"
#include "action.h"
#include "db/db.h"
#include "mi/mi.h"
#include "mi/item.h"
#include "modules/proto_hep/hep.h"
#include "modules/tls_mgm/api.h"

#include "shim.h"

#endif

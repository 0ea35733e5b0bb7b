/* router_f32.c — the library's routers: router_impl.h compiled with R = float. */
#define R float
#define R_EPS FLT_EPSILON
#define ROUTING moe_routing
#define SELECT moe_route_select
#define FORWARD moe_router_forward
#define BACKWARD moe_router_backward
#define FREE moe_routing_free
#include "moe/router_impl.h"

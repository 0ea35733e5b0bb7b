/* router_f64.c — every router in double precision (router_impl.h with R = double), the
 * reference the tests take finite differences of. Not used by the library itself. */
#define R double
#define R_EPS DBL_EPSILON
#define ROUTING moe_routing_f64
#define SELECT moe_route_select_f64
#define FORWARD moe_router_forward_f64
#define BACKWARD moe_router_backward_f64
#define FREE moe_routing_f64_free
#include "moe/router_impl.h"

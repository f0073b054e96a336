/* json.c - placeholder, being written */
#include "engine.h"
int luaopen_ae_json(lua_State *L) {
    lua_newtable(L);
    return 1;
}

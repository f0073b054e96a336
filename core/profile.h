/* profile.h - sampling profiler of the units' Lua code (see profile.c). */
#ifndef AE_PROFILE_H
#define AE_PROFILE_H

#include <lua.h>

void ae_profile_init(void); /* on the loop thread; reads AE_PROFILE / AE_PROFILE_HZ */
/* Around lua_resume of a task thread: returns the previous one, to restore. */
lua_State *ae_profile_enter(lua_State *co);
void ae_profile_write(void); /* at engine exit: the report, then off */

#endif

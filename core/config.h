/* config.h - read the engine configuration (see config.c). */
#ifndef AE_CONFIG_H
#define AE_CONFIG_H

#include <lua.h>
#include <lauxlib.h>

int ae_config_load(const char *path, char **err); /* path NULL: empty config */
lua_State *ae_config_state(void);
int ae_config_push_path(const char *path); /* pushes on ae_config_state(); 1 if not nil */
/* String at a dotted path, or def. The result stays valid until 4 more calls. */
const char *ae_config_string(const char *path, const char *def);
double ae_config_number(const char *path, double def);
int ae_config_bool(const char *path, int def); /* def unless the value is a boolean */
void ae_config_free(void);

#endif

/*
 * luapat: Lua 5.4 pattern matching (string.find, string.match, string.gmatch,
 * string.gsub) with a step budget, so that a backtracking pattern cannot run
 * uncapped inside one C call. The VM's count hook never fires inside a C
 * function, so Lua's own versions can spend hours on one call; these count
 * every matcher step (each try, each single-character test, each byte of
 * %b scanning, bulk copies and compares by size, gsub's and gmatch's loop over
 * subject positions) and call a charge function every LUAPAT_STEPS steps.
 * Results, error messages and the recursion limit ("pattern too complex",
 * 200 levels) are those of the Lua 5.4 library that certgate links.
 * Relies on the Lua C API only; results are built with luaL_Buffer, so the
 * state's allocator and its memory cap apply. Does not decide what a budget
 * is worth: the charge function (the sandbox) counts and stops.
 */
#ifndef CG_LUAPAT_H
#define CG_LUAPAT_H

#include <lua.h>

/** Called every LUAPAT_STEPS matcher steps; raises a Lua error (luaL_error) to stop the match. */
typedef void (*luapat_charge_fn)(lua_State *L, unsigned long steps);
#define LUAPAT_STEPS 1000

/**
 * Replace find, match, gmatch and gsub in the table at @p idx (a string library table) with
 * budgeted versions. Steps left over at the end of a call are carried to the next call in the
 * same state, so many small calls are charged as much as one big one.
 * @param L the state
 * @param idx stack index of the table (relative or absolute)
 * @param charge called every LUAPAT_STEPS steps of matching; may raise an error; NULL: no
 * budget (still bounded recursion)
 */
void luapat_install(lua_State *L, int idx, luapat_charge_fn charge);

/**
 * Forget the steps carried over from earlier calls, so that what one run left
 * does not move the point where the next one is charged (a sandbox calls it
 * when a request begins).
 * @param L the state
 * @param idx stack index of a table luapat_install filled
 */
void luapat_reset(lua_State *L, int idx);

#endif

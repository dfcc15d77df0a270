/*
 * version.h - the one version string of volley, printed by --version and
 * in the engine's start-up line.
 */
#ifndef VOLLEY_VERSION_H
#define VOLLEY_VERSION_H

#define VOLLEY_VERSION "0.2.0"

#endif

// Package cliconfig loads a binary's configuration: command-line flags,
// MESHRELAY_* environment variables and a --config YAML file (read with
// viper), and turns a bad value into a one-line usage error (exit status 2).
//
// A main declares one config struct, binds its fields to flags (Bind, with
// the shared groups Etcd, Log and ConfigFile), and runs through Bound:
// Overlay sets the flags not given on the command line from the environment
// and the file, then the struct's Validate names the bad flag. Main runs
// the root command and turns its error into one line and an exit status;
// Serve runs a binary's long-running part next to its ops server, and
// SourcesHelp says in a command's help where flags come from.
//
// Precedence, highest first: flag set on the command line, environment
// variable, config file, flag default. The environment variable of a flag is
// MESHRELAY_ followed by the flag name in upper case with '-' as '_'
// (--etcd-endpoints → MESHRELAY_ETCD_ENDPOINTS); config file keys are the
// flag names.
//
// The relay's and the node agent's mains import it. It imports
// internal/etcddial, internal/keyspace and internal/opsserver.
package cliconfig

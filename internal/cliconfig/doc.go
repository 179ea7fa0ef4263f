// Package cliconfig loads a binary's configuration with viper: command-line
// flags, MESHRELAY_* environment variables and a --config YAML file, and
// turns a bad value into a one-line usage error (exit status 2).
//
// Precedence, highest first: flag set on the command line, environment
// variable, config file, flag default. The environment variable of a flag is
// MESHRELAY_ followed by the flag name in upper case with '-' as '_'
// (--etcd-endpoints → MESHRELAY_ETCD_ENDPOINTS); config file keys are the
// flag names.
//
// The relay's and the node agent's mains import it.
package cliconfig

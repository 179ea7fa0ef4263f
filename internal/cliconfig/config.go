package cliconfig

import (
	"errors"
	"fmt"
	"strings"
)

// EnvPrefix prefixes every environment variable.
const EnvPrefix = "MESHRELAY"

// ConfigFlag is the name of the flag that names a YAML config file.
const ConfigFlag = "config"

// UsageError is a bad flag, variable or config value. Mains print it as one
// line and exit with status 2.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Invalid reports that the value of key is unusable and why.
func Invalid(key string, value any, why string) error {
	return &UsageError{Msg: fmt.Sprintf("invalid --%s %q: %s", key, fmt.Sprint(value), why)}
}

// ExitCode maps an error returned by a main's run function to a process
// exit status: 0 for nil, 2 for usage errors, 1 otherwise.
func ExitCode(err error) int {
	var ue *UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return 2
	default:
		return 1
	}
}

// EnvVar is the environment variable of a flag: MESHRELAY_ETCD_ENDPOINTS
// for etcd-endpoints.
func EnvVar(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

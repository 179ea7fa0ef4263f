package cliconfig

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cast"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
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

// Load binds every flag of fs to a new viper instance with the environment
// and, when --config is set, the YAML file it names. Keys in the file that
// are not flags are an error.
func Load(fs *pflag.FlagSet) (*Reader, error) {
	v := viper.New()
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	if err := v.BindPFlags(fs); err != nil {
		return nil, fmt.Errorf("bind flags: %w", err)
	}
	if path := v.GetString(ConfigFlag); path != "" {
		if err := readConfig(v, fs, path); err != nil {
			return nil, err
		}
	}
	return &Reader{v: v, fs: fs}, nil
}

// Reader reads typed values and remembers the first invalid one, so a main
// can read every setting and check Err once.
type Reader struct {
	v   *viper.Viper
	fs  *pflag.FlagSet
	err error
}

// Explicit reports whether key was given on the command line, in the
// environment or in the config file, rather than left at its default.
func (r *Reader) Explicit(key string) bool {
	if f := r.fs.Lookup(key); f != nil && f.Changed {
		return true
	}
	if _, ok := os.LookupEnv(EnvVar(key)); ok {
		return true
	}
	return r.v.InConfig(key)
}

// EnvVar is the environment variable of a flag: MESHRELAY_ETCD_ENDPOINTS
// for etcd-endpoints.
func EnvVar(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
}

// Err is the first invalid value read, as a *UsageError.
func (r *Reader) Err() error { return r.err }

func (r *Reader) fail(key string, value any, why string) {
	if r.err == nil {
		r.err = Invalid(key, value, why)
	}
}

// Fail records a semantic error found by the caller (e.g. a value out of range).
func (r *Reader) Fail(key string, value any, why string) { r.fail(key, value, why) }

// String returns the value of key.
func (r *Reader) String(key string) string { return r.v.GetString(key) }

// Strings returns a comma- or whitespace-separated list.
func (r *Reader) Strings(key string) []string {
	raw := r.v.Get(key)
	var parts []string
	switch x := raw.(type) {
	case []string:
		parts = x
	case []any:
		for _, e := range x {
			parts = append(parts, fmt.Sprint(e))
		}
	default:
		parts = []string{cast.ToString(raw)}
	}
	var out []string
	for _, p := range parts {
		for _, f := range strings.FieldsFunc(p, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' }) {
			out = append(out, f)
		}
	}
	return out
}

// StringMap returns key=value pairs (a flag's "k=v,k2=v2", or a YAML map).
func (r *Reader) StringMap(key string) map[string]any {
	raw := r.v.Get(key)
	out := map[string]any{}
	switch x := raw.(type) {
	case map[string]string:
		for k, v := range x {
			out[k] = v
		}
	case map[string]any:
		return x
	case nil:
	default:
		s := strings.Trim(cast.ToString(raw), "[]")
		for _, kv := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' }) {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || k == "" {
				r.fail(key, raw, "want key=value pairs")
				return nil
			}
			out[k] = v
		}
	}
	return out
}

// Duration returns a Go duration ("250ms", "1m").
func (r *Reader) Duration(key string) time.Duration {
	raw := r.v.Get(key)
	d, err := cast.ToDurationE(raw)
	if err != nil {
		r.fail(key, raw, "want a duration such as 100ms or 30s")
	}
	return d
}

// Int returns an integer.
func (r *Reader) Int(key string) int {
	raw := r.v.Get(key)
	n, err := cast.ToIntE(raw)
	if err != nil {
		r.fail(key, raw, "want an integer")
	}
	return n
}

// Float returns a number.
func (r *Reader) Float(key string) float64 {
	raw := r.v.Get(key)
	f, err := cast.ToFloat64E(raw)
	if err != nil {
		r.fail(key, raw, "want a number")
	}
	return f
}

// Bool returns a boolean.
func (r *Reader) Bool(key string) bool {
	raw := r.v.Get(key)
	b, err := cast.ToBoolE(raw)
	if err != nil {
		r.fail(key, raw, "want true or false")
	}
	return b
}

// OneOf returns the value of key and records an error unless it is one of allowed.
func (r *Reader) OneOf(key string, allowed ...string) string {
	s := r.String(key)
	for _, a := range allowed {
		if s == a {
			return s
		}
	}
	r.fail(key, s, "want one of "+strings.Join(allowed, ", "))
	return s
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

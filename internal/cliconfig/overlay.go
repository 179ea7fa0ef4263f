package cliconfig

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cast"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Overlay gives every flag of fs that was not set on the command line the
// value of its MESHRELAY_* environment variable or, failing that, of its key
// in the YAML file named by --config (when fs has that flag and it is set).
// Values are parsed by the flags themselves, so the variables a main bound
// to its flags (fs.StringVar(&cfg.Cluster, ...)) hold the result. A key of
// the file that is not a flag, or a value a flag refuses, is a *UsageError
// naming the flag. Overlaid flags count as Changed.
func Overlay(fs *pflag.FlagSet) error {
	v := viper.New()
	if f := fs.Lookup(ConfigFlag); f != nil && f.Value.String() != "" {
		if err := readConfig(v, fs, f.Value.String()); err != nil {
			return err
		}
	}
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == ConfigFlag {
			return
		}
		raw, ok := os.LookupEnv(EnvVar(f.Name))
		if !ok {
			if !v.InConfig(f.Name) {
				return
			}
			raw = flagString(v.Get(f.Name))
		}
		if serr := fs.Set(f.Name, raw); serr != nil {
			err = Invalid(f.Name, raw, oneLine(serr))
		}
	})
	return err
}

// readConfig reads the YAML file at path into v and refuses keys that are
// not flags of fs.
func readConfig(v *viper.Viper, fs *pflag.FlagSet, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return Invalid(ConfigFlag, path, err.Error())
	}
	defer f.Close()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(f); err != nil {
		return Invalid(ConfigFlag, path, oneLine(err))
	}
	for k := range v.AllSettings() { // top-level keys: a map value is one flag
		if fs.Lookup(k) == nil {
			return Invalid(ConfigFlag, path, fmt.Sprintf("unknown key %q", k))
		}
	}
	return nil
}

// flagString turns a YAML value into the text its flag parses: a list
// becomes "a,b", a map "k=v,k2=v2" (sorted), anything else its string form.
func flagString(raw any) string {
	switch x := raw.(type) {
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = cast.ToString(e)
		}
		return strings.Join(parts, ",")
	case []string:
		return strings.Join(x, ",")
	case map[string]any:
		parts := make([]string, 0, len(x))
		for k, e := range x {
			parts = append(parts, k+"="+cast.ToString(e))
		}
		slices.Sort(parts)
		return strings.Join(parts, ",")
	}
	return cast.ToString(raw)
}

// SourcesHelp says where flags come from besides the command line (see
// Overlay), for a root command's Long help.
const SourcesHelp = `Every flag can also be set as MESHRELAY_<FLAG> (e.g. MESHRELAY_ETCD_ENDPOINTS)
or as a key of the YAML file named by --config; flags win over the
environment, which wins over the file.`

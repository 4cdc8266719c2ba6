package configs

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// isZeroScalar reports whether a value in the file is a zero: 0, 0s, 0.0
// or an empty string. Sections treat a zero as "absent" and ApplyDefaults
// fills it in, so such a key written out would silently get the default:
// overridden reports those instead (verify.max_skew: 0s asks for strict
// clocks and would get 10s). indexKeys collects them.
func isZeroScalar(n *yaml.Node) bool {
	switch n.Tag {
	case "!!str":
		if n.Value == "" {
			return true
		}
		d, err := time.ParseDuration(n.Value)
		return err == nil && d == 0
	case "!!int", "!!float":
		f, err := strconv.ParseFloat(n.Value, 64)
		return err == nil && f == 0
	}
	return false
}

// overridden returns one error per key of paths whose decoded value is no
// longer zero in out: a default replaced what the file says.
func overridden(out any, paths []string) []error {
	var errs []error
	for _, p := range paths {
		v, ok := fieldAt(reflect.ValueOf(out), p)
		if !ok || v.IsZero() {
			continue
		}
		errs = append(errs, fmt.Errorf("%s: %s would be replaced by the default %v: leave the key out for the default, or give a value in its range", p, zeroText(v), v.Interface()))
	}
	return errs
}

func zeroText(v reflect.Value) string {
	switch v.Interface().(type) {
	case time.Duration:
		return "0s"
	case string:
		return `""`
	}
	return "0"
}

// fieldAt follows a key path ("verify.x5u.timeout", "rules[2].limit") through
// structs by their yaml tags, slices by index and pointers.
func fieldAt(v reflect.Value, path string) (reflect.Value, bool) {
	for _, seg := range strings.Split(path, ".") {
		name, rest, _ := strings.Cut(seg, "[")
		for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
			if v.IsNil() {
				return reflect.Value{}, false
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			return reflect.Value{}, false
		}
		f, ok := fieldByTag(v, name)
		if !ok {
			return reflect.Value{}, false
		}
		v = f
		for rest != "" {
			idx, after, _ := strings.Cut(rest, "]")
			i, err := strconv.Atoi(idx)
			if err != nil || v.Kind() != reflect.Slice || i >= v.Len() {
				return reflect.Value{}, false
			}
			v = v.Index(i)
			rest = strings.TrimPrefix(after, "[")
		}
	}
	return v, true
}

func fieldByTag(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if tag == name && t.Field(i).IsExported() {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

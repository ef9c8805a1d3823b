package sqlstore

import (
	"reflect"
	"testing"
)

// TestDialectsComplete catches a dialect missing one of its parts, which
// would otherwise only fail on the code path that needs it.
func TestDialectsComplete(t *testing.T) {
	for _, d := range []*dialect{sqliteDialect, postgresDialect} {
		v := reflect.ValueOf(d).Elem()
		for i := range v.NumField() {
			f := v.Field(i)
			if f.Kind() == reflect.Func && f.IsNil() {
				t.Errorf("%s dialect: %s is not set", d.name, v.Type().Field(i).Name)
			}
		}
		if ms, err := d.loadMigrations(); err != nil || len(ms) == 0 {
			t.Errorf("%s dialect: migrations %v, %v", d.name, ms, err)
		}
	}
}

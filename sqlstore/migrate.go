package sqlstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/valethq/valet"
)

//go:embed migrations
var migrationFS embed.FS

type migration struct {
	version int64
	name    string
	sql     string
}

// loadMigrations returns the helpdesk's migrations for the dialect.
func (d *dialect) loadMigrations() ([]migration, error) { return loadMigrations(d.migrations) }

// loadMigrations returns the migrations of one folder of migrations/,
// ordered by version. A file is named NNNN_what.sql; its number is its
// version. Subfolders (another schema's migrations) are skipped.
func loadMigrations(dir string) ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a version number and _", e.Name())
		}
		b, err := migrationFS.ReadFile(path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(b)})
	}
	slices.SortFunc(out, func(a, b migration) int { return int(a.version - b.version) })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s share a version", out[i-1].name, out[i].name)
		}
	}
	return out, nil
}

// Migrate applies the migrations the database has not seen, all in one
// transaction, and records each in schema_migrations. It is idempotent and
// safe when several processes start at once: the transaction first takes a
// database-wide lock (BEGIN IMMEDIATE on SQLite, an advisory lock on
// PostgreSQL), so the others wait and then find nothing left to do. A
// database migrated by a newer valet is refused rather than misread.
func (s *Store) Migrate(ctx context.Context) error {
	return s.migrate(ctx, "sqlstore.Migrate", s.d.migrations, "schema_migrations")
}

// migrate applies the migrations of folder dir that the version table
// table has not recorded, as Migrate describes. The helpdesk and the hub
// keep their schemas apart this way: each has its own folder and table, so
// either may share a database with the other. table is one of ours, never
// input.
func (s *Store) migrate(ctx context.Context, op, dir, table string) error {
	ms, err := loadMigrations(dir)
	if err != nil {
		return s.fail(op, err, "")
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(op, err, "")
	}
	defer tx.rollback()
	if s.d.lockMigrations != "" {
		if _, err := tx.ExecContext(ctx, s.d.lockMigrations); err != nil {
			return s.fail(op, err, "")
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+table+` (
		version    BIGINT PRIMARY KEY,
		name       TEXT   NOT NULL,
		applied_at BIGINT NOT NULL
	)`); err != nil {
		return s.fail(op, err, "")
	}
	applied := map[int64]bool{}
	var newest int64
	rows, err := tx.QueryContext(ctx, `SELECT version FROM `+table)
	if err != nil {
		return s.fail(op, err, "")
	}
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return s.fail(op, err, "")
		}
		applied[v] = true
		newest = max(newest, v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s.fail(op, err, "")
	}
	if len(ms) > 0 && newest > ms[len(ms)-1].version {
		return &valet.Error{Code: valet.EINTERNAL, Op: op,
			Message: fmt.Sprintf("The database schema (version %d) is newer than this valet (version %d); upgrade valet.",
				newest, ms[len(ms)-1].version)}
	}
	for _, m := range ms {
		if applied[m.version] {
			continue
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return s.fail(op, fmt.Errorf("migration %s: %w", m.name, err), "")
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO `+table+` (version, name, applied_at) VALUES ($1, $2, $3)`,
			m.version, m.name, micros(tx.now)); err != nil {
			return s.fail(op, err, "")
		}
	}
	if err := tx.commit(ctx); err != nil {
		return s.fail(op, err, "")
	}
	return nil
}

// SchemaVersion returns the newest migration applied to the database.
func (s *Store) SchemaVersion(ctx context.Context) (int64, error) {
	return s.schemaVersion(ctx, "sqlstore.SchemaVersion", "schema_migrations")
}

// schemaVersion returns the newest version recorded in table.
func (s *Store) schemaVersion(ctx context.Context, op, table string) (int64, error) {
	var v int64
	err := s.r.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM `+table).Scan(&v)
	return v, s.fail(op, err, "")
}

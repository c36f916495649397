package testenv

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// howToGetPostgres is appended to failures to find or start PostgreSQL:
// tests that need it fail and say what to install, they never skip.
const howToGetPostgres = "the PostgreSQL tests run a throwaway PostgreSQL 15 server: they need its initdb and postgres " +
	"binaries on PATH or in /usr/lib/postgresql/<version>/bin (`apt-get install -y postgresql-15`, or the machine image " +
	"that has PostgreSQL), and, when run as root, a `postgres` user to run them as"

// The role and database that Postgres.ConnString names.
const (
	PostgresUser     = "portcullis"
	PostgresDatabase = "portcullis"
)

// Postgres is a throwaway PostgreSQL server on 127.0.0.1 for tests: its own
// data directory (fsync off: nothing in it needs to survive a crash), a
// free port, its Unix socket beside the data, and a role PostgresUser with
// a random password that owns a database PostgresDatabase. It can be
// stopped and started again on the same port and data, to test what a
// client does while the database is down and after it is back.
type Postgres struct {
	// Port is the TCP port on 127.0.0.1.
	Port int

	dir      string // where the log goes
	root     string // data and socket, owned by the user postgres runs as
	bin      string // postgres
	asUser   []string
	password string

	mu   sync.Mutex
	proc *Process
	dbs  int
}

// NewPostgres starts a Postgres for one test, and stops and removes it when
// the test ends, showing the end of its log if the test failed. A server
// that cannot start fails the test with the reason.
func NewPostgres(t testing.TB) *Postgres {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := StartPostgres(ctx, t.TempDir())
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		p.Close()
		if t.Failed() {
			t.Logf("postgres log (%s) ends:\n%s", p.LogPath(), p.LogTail(40))
		}
	})
	return p
}

// StartPostgres creates a database cluster with initdb and starts postgres
// on a free port, logging to dir/postgres.log. The data lives in a
// directory of its own under os.TempDir (short enough for a Unix socket's
// path, and reachable by the postgres user when the tests run as root),
// removed by Close.
func StartPostgres(ctx context.Context, dir string) (*Postgres, error) {
	initdb, err := postgresBinary("initdb")
	if err != nil {
		return nil, err
	}
	bin, err := postgresBinary("postgres")
	if err != nil {
		return nil, err
	}
	asUser, owner, err := postgresUser()
	if err != nil {
		return nil, err
	}
	root, err := os.MkdirTemp("", "portcullis-postgres-")
	if err != nil {
		return nil, fmt.Errorf("starting postgres: %w", err)
	}
	p := &Postgres{dir: dir, root: root, bin: bin, asUser: asUser, password: rand.Text()}
	if err := p.create(ctx, initdb, owner); err != nil {
		os.RemoveAll(root)
		return nil, err
	}
	if err := p.Start(ctx); err != nil {
		p.Close()
		return nil, err
	}
	if err := p.bootstrap(ctx); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// postgresBinary finds one of PostgreSQL's programs: on PATH, or in
// Debian's versioned directory, which is not on PATH by default.
func postgresBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// The newest version first: "9.6" sorts after "15" as text, so compare
	// the major versions as numbers.
	major := func(d string) int { n, _ := strconv.Atoi(filepath.Base(filepath.Dir(d))); return n }
	slices.SortFunc(dirs, func(a, b string) int { return major(b) - major(a) })
	for _, d := range dirs {
		if p := filepath.Join(d, name); isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("starting postgres: PostgreSQL's %s is not on PATH nor in /usr/lib/postgresql/*/bin\n%s", name, howToGetPostgres)
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// postgresUser returns the command prefix that runs PostgreSQL's programs
// and the uid and gid that must own its data. initdb and postgres refuse
// to run as root (a server bug must not own the machine), so as root they
// run as the postgres user; otherwise as ourselves.
//
// setpriv rather than runuser or su: it changes user and then execs, so
// the server is our direct child, gets our signals, and has a parent-death
// signal of its own. A credential change clears the one StartProcess set
// (prctl(2), PR_SET_PDEATHSIG), so setpriv sets it again after the change:
// a test binary that crashes takes its server with it.
func postgresUser() (prefix []string, owner *[2]int, err error) {
	if os.Geteuid() != 0 {
		return nil, nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, nil, fmt.Errorf("starting postgres as root: PostgreSQL refuses to run as root and there is no postgres user to run it as (%v); "+
			"create one (`useradd --system postgres`) or run the tests as another user\n%s", err, howToGetPostgres)
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		return nil, nil, errors.New("starting postgres as root: PostgreSQL refuses to run as root, and setpriv (util-linux), " +
			"which runs it as the postgres user, is not on PATH; install util-linux or run the tests as another user")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return []string{setpriv, "--reuid=" + u.Uid, "--regid=" + u.Gid, "--init-groups", "--pdeathsig=KILL", "--"}, &[2]int{uid, gid}, nil
}

// command returns bin with args as the user PostgreSQL runs as.
func (p *Postgres) command(bin string, args ...string) (string, []string) {
	if len(p.asUser) == 0 {
		return bin, args
	}
	return p.asUser[0], append(append(p.asUser[1:len(p.asUser):len(p.asUser)], bin), args...)
}

func (p *Postgres) dataDir() string   { return filepath.Join(p.root, "data") }
func (p *Postgres) socketDir() string { return p.root }

// LogPath is the server's log file.
func (p *Postgres) LogPath() string { return filepath.Join(p.dir, "postgres.log") }

// create runs initdb. The superuser is "postgres", trusted on the Unix
// socket only (which is in a directory only its owner can enter); TCP
// connections must give a password, as a real deployment's would.
func (p *Postgres) create(ctx context.Context, initdb string, owner *[2]int) error {
	if owner != nil {
		if err := os.Chown(p.root, owner[0], owner[1]); err != nil {
			return fmt.Errorf("starting postgres: giving its directory to the postgres user: %w", err)
		}
	}
	bin, args := p.command(initdb, "--pgdata="+p.dataDir(), "--username=postgres", "--auth-local=trust", "--auth-host=scram-sha-256",
		"--encoding=UTF8", "--no-locale", "--no-sync")
	cmd := exec.CommandContext(ctx, bin, args...)
	// A directory the postgres user can enter: initdb complains about a
	// working directory it cannot read.
	cmd.Dir = p.root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("starting postgres: initdb: %w\n%s", err, tail(string(out), 20))
	}
	return nil
}

// Start starts the server on its port and data: the first time, or again
// after Stop. It returns once the server accepts connections.
func (p *Postgres) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc != nil {
		if exited, _ := p.proc.Exited(); !exited {
			return errors.New("starting postgres: it is running already")
		}
	}
	if p.Port == 0 {
		port, err := FreePort()
		if err != nil {
			return fmt.Errorf("starting postgres: %w", err)
		}
		p.Port = port
	}
	bin, args := p.command(p.bin, "-D", p.dataDir(), "-p", strconv.Itoa(p.Port), "-k", p.socketDir(),
		"-c", "listen_addresses=127.0.0.1",
		// Throwaway data: no crash safety, for speed.
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		// Tests open several stores at once, each with a pool and a
		// listening connection.
		"-c", "max_connections=300",
		"-c", "log_min_messages=warning", "-c", "log_connections=off")
	proc, err := StartProcess("postgres", p.dir, bin, args, nil)
	if err != nil {
		return err
	}
	if err := proc.waitFor(ctx, 30*time.Second, "postgres accepts connections", func(ctx context.Context) error {
		c, err := pgx.Connect(ctx, p.adminConnString("postgres"))
		if err != nil {
			return err
		}
		return c.Close(ctx)
	}); err != nil {
		proc.Stop(5 * time.Second)
		return fmt.Errorf("%w\n%s", err, howToGetPostgres)
	}
	p.proc = proc
	return nil
}

// Stop shuts the server down: fast shutdown (SIGINT), which ends every
// client's connection at once as a database outage would. SIGTERM would
// wait for clients to leave, and pools never do.
func (p *Postgres) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc == nil {
		return
	}
	syscall.Kill(p.proc.PID(), syscall.SIGINT)
	select {
	case <-p.proc.Done():
	case <-time.After(30 * time.Second):
		p.proc.Stop(5 * time.Second)
	}
	p.proc = nil
}

// Close stops the server and removes its data.
func (p *Postgres) Close() {
	p.Stop()
	os.RemoveAll(p.root)
}

// LogTail returns the last n lines of the server's log.
func (p *Postgres) LogTail(n int) string {
	b, err := os.ReadFile(p.LogPath())
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return tail(string(b), n)
}

// ConnString is a URL for PostgresUser's database PostgresDatabase over TCP,
// with the password: postgres://portcullis:…@127.0.0.1:PORT/portcullis.
func (p *Postgres) ConnString() string { return p.connString(PostgresDatabase) }

func (p *Postgres) connString(db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(PostgresUser, p.password),
		Host: hostPort(p.Port), Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// adminConnString is the superuser over the Unix socket.
func (p *Postgres) adminConnString(db string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", p.socketDir(), p.Port, db)
}

// bootstrap creates PostgresUser and its database, as an operator would
// for Portcullis: a role that owns its database and nothing else.
func (p *Postgres) bootstrap(ctx context.Context) error {
	c, err := pgx.Connect(ctx, p.adminConnString("postgres"))
	if err != nil {
		return fmt.Errorf("starting postgres: connecting as the superuser: %w", err)
	}
	defer c.Close(ctx)
	for _, sql := range []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", PostgresUser, p.password),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", PostgresDatabase, PostgresUser),
	} {
		if _, err := c.Exec(ctx, sql); err != nil {
			return fmt.Errorf("starting postgres: creating role and database: %w", err)
		}
	}
	return nil
}

// NewDatabase creates another empty database owned by PostgresUser and
// returns its URL, so that tests sharing one server start from nothing.
func (p *Postgres) NewDatabase(ctx context.Context) (string, error) {
	p.mu.Lock()
	p.dbs++
	name := fmt.Sprintf("%s_%d", PostgresDatabase, p.dbs)
	p.mu.Unlock()
	c, err := pgx.Connect(ctx, p.adminConnString("postgres"))
	if err != nil {
		return "", fmt.Errorf("creating database %s: %w", name, err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s OWNER %s", name, PostgresUser)); err != nil {
		return "", fmt.Errorf("creating database %s: %w", name, err)
	}
	return p.connString(name), nil
}

package testenv

import (
	"context"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestPostgres(t *testing.T) {
	ctx := context.Background()
	pg := NewPostgres(t)
	query := func(conn string) (string, error) {
		c, err := pgx.Connect(ctx, conn)
		if err != nil {
			return "", err
		}
		defer c.Close(ctx)
		var who string
		err = c.QueryRow(ctx, "SELECT current_user || '@' || current_database()").Scan(&who)
		return who, err
	}
	if got, err := query(pg.ConnString()); err != nil || got != "portcullis@portcullis" {
		t.Fatalf("connecting with ConnString: got %q, %v; want portcullis@portcullis", got, err)
	}

	// TCP needs the password, as a real deployment would.
	u, _ := url.Parse(pg.ConnString())
	u.User = url.User(PostgresUser)
	if _, err := query(u.String()); err == nil {
		t.Errorf("connecting without the password: got no error")
	}

	other, err := pg.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := query(other); err != nil || got != "portcullis@portcullis_1" {
		t.Errorf("connecting to NewDatabase: got %q, %v; want portcullis@portcullis_1", got, err)
	}

	// Stopped, nothing answers; started again, the same port and data.
	c, err := pgx.Connect(ctx, pg.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE TABLE kept (n int)"); err != nil {
		t.Fatal(err)
	}
	pg.Stop()
	if err := c.Ping(ctx); err == nil {
		t.Errorf("ping while stopped: got no error")
	}
	if _, err := query(pg.ConnString()); err == nil {
		t.Errorf("connecting while stopped: got no error")
	}
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c2, err := pgx.Connect(ctx, pg.ConnString())
	if err != nil {
		t.Fatalf("connecting after restart: %v", err)
	}
	defer c2.Close(ctx)
	if _, err := c2.Exec(ctx, "INSERT INTO kept VALUES (1)"); err != nil {
		t.Errorf("the data after restart: %v", err)
	}
}

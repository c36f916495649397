package respond

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestOneErrorWriter keeps the packages that answer clients on Error:
// net/http's own error writers answer in plain text, which kubectl shows
// as an unexplained error and a browser as a bare line, without the
// pages' security headers.
func TestOneErrorWriter(t *testing.T) {
	forbidden := map[string]bool{"Error": true, "NotFound": true, "NotFoundHandler": true}
	for _, pkg := range []string{"server", "proxy", "authenticate", "session"} {
		files, err := filepath.Glob(filepath.Join("..", pkg, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("listing package %s: %v (no files)", pkg, err)
		}
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			httpName := ""
			for _, imp := range f.Imports {
				if p, _ := strconv.Unquote(imp.Path.Value); p == "net/http" {
					httpName = "http"
					if imp.Name != nil {
						httpName = imp.Name.Name
					}
				}
			}
			if httpName == "" {
				continue
			}
			ast.Inspect(f, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == httpName && forbidden[sel.Sel.Name] {
					t.Errorf("%s: http.%s: answer errors with respond.Error", fset.Position(sel.Pos()), sel.Sel.Name)
				}
				return true
			})
		}
	}
}

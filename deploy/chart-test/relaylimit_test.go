package charttest

import (
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
	"go/types"
	"testing"
)

// relayMaxTxnBytes reads the relay's default transaction byte limit from
// relay/etcdsink/options.go, so etcd's --max-request-bytes follows it
// without this module importing the main one.
func relayMaxTxnBytes(t *testing.T) int64 {
	t.Helper()
	const file = "../../relay/etcdsink/options.go"
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, 0)
	if err != nil {
		t.Fatalf("parse %s: %v", file, err)
	}
	var expr ast.Expr
	ast.Inspect(f, func(n ast.Node) bool {
		if vs, ok := n.(*ast.ValueSpec); ok {
			for i, name := range vs.Names {
				if name.Name == "DefaultMaxTxnBytes" && i < len(vs.Values) {
					expr = vs.Values[i]
				}
			}
		}
		return expr == nil
	})
	if expr == nil {
		t.Fatalf("%s: no DefaultMaxTxnBytes", file)
	}
	tv, err := types.Eval(fset, nil, expr.Pos(), types.ExprString(expr))
	if err != nil || tv.Value == nil {
		t.Fatalf("%s: DefaultMaxTxnBytes = %s is not a constant expression: %v", file, types.ExprString(expr), err)
	}
	v, ok := constant.Int64Val(tv.Value)
	if !ok || v <= 0 {
		t.Fatalf("%s: DefaultMaxTxnBytes = %v", file, tv.Value)
	}
	return v
}

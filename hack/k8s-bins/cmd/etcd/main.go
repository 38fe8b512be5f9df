// Command etcd wraps etcdmain: `go install` of the etcd server module is
// refused because its go.mod carries replace directives.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }

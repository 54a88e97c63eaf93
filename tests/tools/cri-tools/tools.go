//go:build tools

// Package tools pins what `go test -c sigs.k8s.io/cri-tools/cmd/critest`
// needs. critest is built as the test binary of cri-tools' cmd/critest, a
// package with only a _test.go file, so neither the go.mod `tool` directive
// nor `go mod tidy` would otherwise keep its imports in go.mod and go.sum.
// The `tools` build tag keeps this file out of every build.
package tools

import (
	_ "github.com/onsi/ginkgo/v2"
	_ "github.com/onsi/gomega"
	_ "sigs.k8s.io/cri-tools/pkg/benchmark"
	_ "sigs.k8s.io/cri-tools/pkg/common"
	_ "sigs.k8s.io/cri-tools/pkg/framework"
	_ "sigs.k8s.io/cri-tools/pkg/validate"
	_ "sigs.k8s.io/cri-tools/pkg/version"
)

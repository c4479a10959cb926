package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Document is one YAML document of a source, as JSON.
type Document struct {
	Source string // the file, or the kustomize directory it was built from
	Index  int    // 1-based position in the source
	JSON   []byte
	// Err is why the document is not JSON-compatible YAML (then JSON is nil).
	Err error
}

// ReadFile splits a multi-document YAML file into its documents.
func ReadFile(path string) ([]Document, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Split(path, raw)
}

// BuildKustomization runs kustomize build on dir (with the default options,
// as `kustomize build DIR` or `kubectl kustomize DIR`) and splits the output.
func BuildKustomization(dir string) ([]Document, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), abs)
	if err != nil {
		return nil, fmt.Errorf("kustomize build: %w", err)
	}
	out, err := m.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("kustomize build: %w", err)
	}
	return Split(dir+" (kustomize build)", out)
}

// Split returns the non-empty documents of a YAML stream, each converted
// to JSON; a duplicated key is an error of its document.
func Split(source string, raw []byte) ([]Document, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	var docs []Document
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return docs, fmt.Errorf("document %d: %w", i, err)
		}
		if isEmpty(doc) {
			i--
			continue
		}
		j, err := yaml.YAMLToJSONStrict(doc)
		d := Document{Source: source, Index: i, JSON: j, Err: err}
		if err == nil && bytes.Equal(bytes.TrimSpace(j), []byte("null")) {
			i--
			continue // comments only
		}
		docs = append(docs, d)
	}
}

// isEmpty: only blank lines and comments.
func isEmpty(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' && !bytes.Equal(line, []byte("---")) {
			return false
		}
	}
	return true
}

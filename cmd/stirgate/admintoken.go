package main

import (
	"fmt"
	"os"
	"strings"
)

// minTokenLength keeps guessable tokens out.
const minTokenLength = 16

// readAdminToken reads admin.token_file ("" : no token, nothing beyond
// health, metrics and x5u is served).
func readAdminToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	return readSecretFile("admin.token_file", path, minTokenLength)
}

// readSecretFile reads a one-line secret (a token, a password) from path.
// The file must not be readable by group or others; errors name the key
// and the path, never the content.
func readSecretFile(key, path string, minLength int) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s: %s is readable by group or others (mode %04o): chmod 600 it", key, path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	secret := strings.TrimSpace(string(b))
	if len(secret) < max(minLength, 1) || strings.ContainsAny(secret, " \t\r\n") {
		return "", fmt.Errorf("%s: %s: want one line of at least %d characters without spaces", key, path, max(minLength, 1))
	}
	return secret, nil
}

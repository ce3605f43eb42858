package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/config"
)

// loadSigningKeys reads keys.signing_key, creating it first when it is
// missing and keys.generate is set. Problems are located in the config file.
func loadSigningKeys(c *config.Config, log *zap.Logger) ([]auth.SigningKey, error) {
	path := c.Keys.SigningKey
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) && c.Keys.Generate {
		key, err := auth.GenerateSigningKey("")
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("creating key folder: %w", err)
		}
		if err := auth.WriteKeyFile(path, auth.FormatSynapse, []auth.SigningKey{key}); err != nil {
			return nil, err
		}
		log.Info("generated signing key", zap.String("file", path), zap.String("key_id", string(key.ID)),
			zap.String("public_key", auth.EncodeBase64(key.Public())))
	}
	keys, err := auth.LoadKeyFile(path)
	if err != nil {
		return nil, c.Errorf("keys.signing_key", "%v", err)
	}
	if id := c.Keys.RequestKey; id != "" {
		found := false
		for _, k := range keys {
			found = found || string(k.ID) == id
		}
		if !found {
			return nil, c.Errorf("keys.request_key", "%s is not in %s", id, path)
		}
	}
	return keys, nil
}

// describeKeys summarises the key file for check-config without creating it.
func describeKeys(c *config.Config) (string, error) {
	if _, err := os.Stat(c.Keys.SigningKey); errors.Is(err, fs.ErrNotExist) && c.Keys.Generate {
		return fmt.Sprintf("generated on first run into %s", c.Keys.SigningKey), nil
	}
	keys, err := loadSigningKeys(c, zap.NewNop())
	if err != nil {
		return "", err
	}
	out := ""
	for i, k := range keys {
		if i > 0 {
			out += ", "
		}
		out += string(k.ID)
	}
	return out + " from " + c.Keys.SigningKey, nil
}

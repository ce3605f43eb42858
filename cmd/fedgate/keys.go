package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"

	"github.com/fedgate/fedgate/auth"
	"github.com/fedgate/fedgate/config"
)

// ensureSigningKey creates keys.signing_key when it is missing and
// keys.generate is set (Synapse format, like "fedgate keygen").
func ensureSigningKey(c *config.Config, log *zap.Logger) error {
	path := c.Keys.SigningKey
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) || !c.Keys.Generate {
		return nil
	}
	key, err := auth.GenerateSigningKey("")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating key folder: %w", err)
	}
	if err := auth.WriteKeyFile(path, auth.FormatSynapse, []auth.SigningKey{key}); err != nil {
		return err
	}
	log.Info("generated signing key", zap.String("file", path), zap.String("key_id", string(key.ID)),
		zap.String("public_key", auth.EncodeBase64(key.Public())))
	return nil
}

// describeKeys summarises the key file for check-config without creating
// it; gateway.Check has already validated it.
func describeKeys(c *config.Config) string {
	if _, err := os.Stat(c.Keys.SigningKey); errors.Is(err, fs.ErrNotExist) && c.Keys.Generate {
		return fmt.Sprintf("generated on first run into %s", c.Keys.SigningKey)
	}
	keys, err := auth.LoadKeyFile(c.Keys.SigningKey)
	if err != nil {
		return err.Error()
	}
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = string(k.ID)
	}
	return strings.Join(ids, ", ") + " from " + c.Keys.SigningKey
}

package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/fedgate/fedgate/certs"
	"github.com/fedgate/fedgate/cluster"
	"github.com/fedgate/fedgate/config"
	"github.com/fedgate/fedgate/gateway"
)

func cmdRun(env *environment, args []string) int {
	fs := newFlagSet(env, "run", "-config FILE",
		"Runs the gateway on the listeners FILE configures until SIGINT or SIGTERM;\n"+
			"then /readyz turns 503, fedgate stops accepting connections, lets in-flight\n"+
			"requests finish for up to server.shutdown_grace and exits 0.\n\n"+
			"SIGHUP (or a change of FILE) reloads the configuration, the policy list file\n"+
			"and the certificate files, and reopens a decision log file; a configuration\n"+
			"with an error is refused and the running one stays.")
	path := fs.String("config", "gateway.toml", "configuration file")
	if code, ok := parseFlags(env, fs, args, 0); !ok {
		return code
	}
	c, err := config.Load(*path)
	if err != nil {
		printConfigError(env.stderr, err)
		return exitFailure
	}
	log, stopLog, err := newLogger(c.Log, env.stderr)
	if err != nil {
		fmt.Fprintf(env.stderr, "fedgate: %v\n", err)
		return exitFailure
	}
	defer stopLog()
	defer log.Sync()

	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(signals)

	if err := run(c, *path, log, signals); err != nil {
		log.Error("fedgate stopped", zap.Error(err))
		printConfigError(env.stderr, err)
		return exitFailure
	}
	return exitOK
}

// run starts everything c describes and serves until a terminating signal.
func run(c *config.Config, path string, log *zap.Logger, signals <-chan os.Signal) error {
	log.Info("starting fedgate", zap.String("version", version), zap.String("config", c.File), zap.String("server_name", c.ServerName))
	if len(c.Servers) > 0 {
		log.Info("hosting several servers", zap.Strings("servers", hostedNames(c)))
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data folder: %w", err)
	}
	if err := ensureSigningKeys(c, log); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cl, err := newCluster(c, log)
	if err != nil {
		return err
	}
	var shared certmagic.Storage // cluster mode: ACME storage in Redis
	if cl != nil {
		clusterDone := make(chan struct{})
		go func() {
			defer close(clusterDone)
			cl.Run(ctx)
		}()
		defer func() {
			cancel()
			<-clusterDone
			cl.Close()
		}()
		shared = cl.CertStorage(cluster.CertStorageOptions{})
		log.Info("cluster mode: sharing limits, keys, backoff and ACME storage in Redis",
			zap.String("redis", redactURL(c.Cluster.Redis)), zap.String("prefix", cl.Prefix()), zap.String("node", cl.Node()))
	}
	cm, err := certs.NewSet(withSharedStorage(certsOptionsAll(c, log), shared))
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	if err := cm.Start(ctx); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	defer cm.Stop()

	gw, err := gateway.New(gateway.Options{
		Config:       c,
		Logger:       log,
		TLSConfig:    cm.TLSConfig(),
		WrapHTTP:     cm.HTTPHandler,
		Certificates: cm,
		Version:      version,
		Cluster:      cl,
	})
	if err != nil {
		return err
	}
	if err := gw.Start(); err != nil {
		return err
	}
	log.Info("fedgate ready")

	changes := make(chan struct{}, 1)
	go watchFile(ctx, c.File, configPollInterval, changes)
	for {
		var sig os.Signal
		select {
		case <-changes:
			log.Info("configuration file changed, reloading", zap.String("config", c.File))
			reload(gw, cm, shared, path, log)
			continue
		case sig = <-signals:
		}
		if sig == syscall.SIGHUP {
			reload(gw, cm, shared, path, log)
			continue
		}
		grace := c.Server.ShutdownGrace.D()
		log.Info("shutting down", zap.String("signal", sig.String()), zap.Duration("grace", grace))
		sctx, scancel := context.WithTimeout(context.Background(), grace)
		start := time.Now()
		err := gw.Shutdown(sctx)
		scancel()
		if err != nil {
			log.Warn("grace period over, remaining requests were cut off", zap.Error(err))
		}
		log.Info("stopped", zap.Duration("drained_in", time.Since(start)))
		return nil
	}
}

// reload re-reads the configuration; an invalid file is refused and the
// running configuration stays. Certificate files are re-read either way;
// the certificate settings (hosted servers added or removed, names) follow
// a configuration the gateway accepted.
func reload(gw *gateway.Gateway, cm *certs.Set, shared certmagic.Storage, path string, log *zap.Logger) {
	c, err := config.Load(path)
	if err == nil {
		if err = ensureSigningKeys(c, log); err == nil {
			err = gw.Reload(c)
		} else {
			gw.ReloadFailed()
		}
	}
	if err != nil {
		if c == nil {
			gw.ReloadFailed() // Reload counts its own refusals
		}
		reloadCertificates(cm, nil, shared, log)
		log.Error("reload refused, keeping the running configuration", zap.Error(err))
		return
	}
	reloadCertificates(cm, c, shared, log)
	log.Info("configuration reloaded", zap.String("config", c.File))
}

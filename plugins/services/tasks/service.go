package tasks

import (
	"context"

	api "github.com/containerd/containerd/api/services/tasks/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hullrt/hull/internal/errgrpc"
)

// service is containerd.services.tasks.v1.Tasks over the tasks service
// plugin: it only maps errors to gRPC codes.
type service struct {
	api.UnimplementedTasksServer
	local api.TasksClient
}

func (s *service) RegisterGRPC(g *grpc.Server) { api.RegisterTasksServer(g, s) }

func (s *service) Create(ctx context.Context, req *api.CreateTaskRequest) (*api.CreateTaskResponse, error) {
	resp, err := s.local.Create(ctx, req)
	return resp, errgrpc.ToGRPC(err)
}

func (s *service) Start(ctx context.Context, req *api.StartRequest) (*api.StartResponse, error) {
	resp, err := s.local.Start(ctx, req)
	return resp, errgrpc.ToGRPC(err)
}

func (s *service) Delete(ctx context.Context, req *api.DeleteTaskRequest) (*api.DeleteResponse, error) {
	resp, err := s.local.Delete(ctx, req)
	return resp, errgrpc.ToGRPC(err)
}

func (s *service) DeleteProcess(ctx context.Context, req *api.DeleteProcessRequest) (*api.DeleteResponse, error) {
	resp, err := s.local.DeleteProcess(ctx, req)
	return resp, errgrpc.ToGRPC(err)
}

func (s *service) Get(ctx context.Context, req *api.GetRequest) (*api.GetResponse, error) {
	resp, err := s.local.Get(ctx, req)
	return resp, errgrpc.ToGRPC(err)
}

func (s *service) List(ctx context.Context, req *api.ListTasksRequest) (*api.ListTasksResponse, error) {
	resp, err := s.local.List(ctx, req)
	return resp, errgrpc.ToGRPC(err)
}

func (s *service) Kill(ctx context.Context, req *api.KillRequest) (*emptypb.Empty, error) {
	resp, err := s.local.Kill(ctx, req)
	return resp, errgrpc.ToGRPC(err)
}

func (s *service) Exec(ctx context.Context, req *api.ExecProcessRequest) (*emptypb.Empty, error) {
	resp, err := s.local.Exec(ctx, req)
	return resp, errgrpc.ToGRPC(err)
}

func (s *service) ResizePty(ctx context.Context, req *api.ResizePtyRequest) (*emptypb.Empty, error) {
	resp, err := s.local.ResizePty(ctx, req)
	return resp, errgrpc.ToGRPC(err)
}

func (s *service) CloseIO(ctx context.Context, req *api.CloseIORequest) (*emptypb.Empty, error) {
	resp, err := s.local.CloseIO(ctx, req)
	return resp, errgrpc.ToGRPC(err)
}

func (s *service) Pause(ctx context.Context, req *api.PauseTaskRequest) (*emptypb.Empty, error) {
	resp, err := s.local.Pause(ctx, req)
	return resp, errgrpc.ToGRPC(err)
}

func (s *service) Resume(ctx context.Context, req *api.ResumeTaskRequest) (*emptypb.Empty, error) {
	resp, err := s.local.Resume(ctx, req)
	return resp, errgrpc.ToGRPC(err)
}

func (s *service) ListPids(ctx context.Context, req *api.ListPidsRequest) (*api.ListPidsResponse, error) {
	resp, err := s.local.ListPids(ctx, req)
	return resp, errgrpc.ToGRPC(err)
}

func (s *service) Checkpoint(ctx context.Context, req *api.CheckpointTaskRequest) (*api.CheckpointTaskResponse, error) {
	resp, err := s.local.Checkpoint(ctx, req)
	return resp, errgrpc.ToGRPC(err)
}

func (s *service) Update(ctx context.Context, req *api.UpdateTaskRequest) (*emptypb.Empty, error) {
	resp, err := s.local.Update(ctx, req)
	return resp, errgrpc.ToGRPC(err)
}

func (s *service) Metrics(ctx context.Context, req *api.MetricsRequest) (*api.MetricsResponse, error) {
	resp, err := s.local.Metrics(ctx, req)
	return resp, errgrpc.ToGRPC(err)
}

func (s *service) Wait(ctx context.Context, req *api.WaitRequest) (*api.WaitResponse, error) {
	resp, err := s.local.Wait(ctx, req)
	return resp, errgrpc.ToGRPC(err)
}
